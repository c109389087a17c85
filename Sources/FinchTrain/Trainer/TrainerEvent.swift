import Foundation

/// Figures of one optimizer step (a line of the run's metrics.jsonl).
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    /// Epochs completed, fractional (step / optimizer steps per epoch).
    public var epoch: Double
    /// Mean loss over the step's counted tokens (all accumulated micro-batches).
    public var loss: Double
    public var learningRate: Double
    /// Gradient norm before clipping.
    public var gradNorm: Double
    /// Tokens processed (all rows, counted or not) and the wall time of the step.
    public var tokens: Int
    public var seconds: Double
    public var tokensPerSecond: Double
    public var peakRSSMiB: Double

    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, learningRate = "lr", gradNorm = "grad_norm", tokens, seconds
        case tokensPerSecond = "tokens_per_s", peakRSSMiB = "peak_rss_mib"
    }
}

/// An evaluation's result.
public struct EvalMetrics: Sendable, Codable, Equatable {
    public var step: Int
    public var loss: Double
    public var perplexity: Double
    public var tokens: Int
    enum CodingKeys: String, CodingKey { case step, loss = "eval_loss", perplexity = "eval_ppl", tokens = "eval_tokens" }
}

/// What a finished (or stopped) run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    public var totalSteps: Int
    public var losses: [Double]
    public var lastEval: EvalMetrics?
    /// Stopped early by `Trainer.requestStop()` (a checkpoint was written).
    public var interrupted: Bool
    /// Where the final adapter (or, when interrupted, the checkpoint) was written.
    public var outputPath: String?
    public var seconds: Double
}

/// Progress reports of a run, for a progress bar, a log, or a server's events.
public enum TrainerEvent: Sendable {
    case started(totalSteps: Int, startStep: Int, trainExamples: Int, evalExamples: Int, trainableParameters: Int)
    case step(StepMetrics, totalSteps: Int)
    case evaluation(EvalMetrics)
    case checkpoint(step: Int, path: String)
    case finished(TrainingSummary)
}
