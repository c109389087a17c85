import FinchModels
import Foundation
import Prometheus

/// The server's Prometheus metrics (`GET /metrics`): requests by route and status, tokens read
/// and generated, the queue, batch sizes, time to first token and per-token latency.
public final class ServerMetrics: EngineObserver, @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let waiting: Gauge
    private let running: Gauge
    private let batchSize: ValueHistogram
    private let stepSeconds: ValueHistogram
    private let firstToken: ValueHistogram
    private let tokenGap: ValueHistogram

    public init() {
        promptTokens = registry.makeCounter(name: "finch_prompt_tokens_total", help: "Prompt tokens read.")
        generatedTokens = registry.makeCounter(name: "finch_generation_tokens_total", help: "Tokens generated.")
        waiting = registry.makeGauge(name: "finch_requests_waiting", help: "Sequences waiting for a place in the batch.")
        running = registry.makeGauge(name: "finch_requests_running", help: "Sequences in the batch.")
        batchSize = registry.makeValueHistogram(name: "finch_batch_size", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
                                                help: "Sequences per forward pass.")
        stepSeconds = registry.makeValueHistogram(name: "finch_step_seconds",
                                                  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
                                                  help: "Duration of one forward pass with its sampling.")
        firstToken = registry.makeValueHistogram(name: "finch_time_to_first_token_seconds",
                                                 buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
                                                 help: "From a request's arrival to its first generated token.")
        tokenGap = registry.makeValueHistogram(name: "finch_time_per_output_token_seconds",
                                               buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
                                               help: "Between consecutive generated tokens of a sequence.")
    }

    func request(route: String, status: Int) {
        registry.makeCounter(name: "finch_requests_total", labels: [("route", route), ("status", String(status))],
                             help: "HTTP requests by route and status.").increment()
    }

    func prompt(tokens: Int) { promptTokens.increment(by: Int64(tokens)) }
    func firstToken(after seconds: Double) { firstToken.record(seconds) }
    func tokenGap(_ seconds: Double) { tokenGap.record(seconds) }

    public func engineStepped(_ report: BatchEngine.StepReport, seconds: Double, running r: Int, waiting w: Int) {
        generatedTokens.increment(by: Int64(report.generated))
        batchSize.record(Double(report.sequences))
        stepSeconds.record(seconds)
    }

    /// The gauges follow every change of the engine's sequences, however a request ended (finished,
    /// failed, cancelled by a client that went away, shutdown), not only the steps.
    public func engineLoad(running r: Int, waiting w: Int) {
        running.set(to: Double(r))
        waiting.set(to: Double(w))
    }

    /// The metrics in Prometheus' text format.
    public func text() -> String { registry.emitToString() }
}
