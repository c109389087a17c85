#if canImport(Glibc)
import Glibc
#endif
import FinchFormats
@testable import FinchModels
@testable import FinchServe
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// Counts generated tokens (engine observer).
final class TokenCounter: EngineObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func engineStepped(_ report: BatchEngine.StepReport, seconds: Double, running: Int, waiting: Int) {
        lock.withLock { total += report.generated }
    }
    var generated: Int { lock.withLock { total } }
}

/// A live server on loopback: a streaming client that goes away stops its generation.
final class DisconnectTests: XCTestCase {
    func testClientThatDisconnectsStopsItsGeneration() async throws {
        let lm = try ServeFixtures.model()
        let engine = InferenceEngine(lm: lm, maxBatch: 4)
        defer { engine.shutdown() }
        let counter = TokenCounter()
        engine.observer = counter
        let served = ServedModel(engine: engine, name: "smollm2-135m", contextLength: 4096, adapters: [:])
        var options = ServeOptions()
        options.port = 0
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let app = try FinchServer.application(state: ServerState(model: served), options: options, logger: logger)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let body = #"{"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": true, "temperature": 0, "stream": true}"#
            let request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
            let connection = try RawConnection(port: port)
            XCTAssertTrue(connection.send(request))
            // Read until a few tokens have streamed, then hang up.
            let received = await connection.read(until: { $0.components(separatedBy: "data: ").count >= 5 })
            XCTAssertTrue(received.hasPrefix("HTTP/1.1 200"), received)
            connection.close()
            // The sequence leaves the batch within a few steps instead of running 3000 tokens.
            var waited = 0
            while engine.load.running > 0 || engine.load.waiting > 0 {
                try await Task.sleep(for: .milliseconds(20))
                waited += 20
                if waited > 10_000 { break }
            }
            XCTAssertEqual(engine.load.running, 0, "the generation stopped")
            XCTAssertLessThan(counter.generated, 300, "generated \(counter.generated) of 3000 tokens")
        }
    }
}

/// An engine's `shutdown()` returns only once its thread has left the model: tests (and any
/// caller) that start another engine over the same model must not overlap a forward pass of the
/// old one (that race crashed a test once, in LoRAHost.withRowAdapters).
final class EngineShutdownTests: XCTestCase {
    func testShutdownWaitsForTheEngineThread() async throws {
        let lm = try ServeFixtures.model()
        for _ in 0..<3 {
            let engine = InferenceEngine(lm: lm, maxBatch: 4)
            let prompt = lm.tokenizer.encode("Once upon a time")
            var request = GenerationRequest(promptTokens: prompt, adapter: nil, maxTokens: 2000)
            request.stopTokenIds = []   // no end-of-sequence stop: it runs until shut down
            let stream = try XCTUnwrap(engine.submit(request))
            var it = stream.makeAsyncIterator()
            _ = await it.next()   // generating now
            XCTAssertTrue(engine.isRunning)
            engine.shutdown()
            XCTAssertFalse(engine.isRunning, "shutdown returned while the engine thread still runs")
            engine.shutdown()   // a second call returns at once
            var last: GenerationEvent?
            while let e = await it.next() { last = e }
            guard case .failed? = last else { return XCTFail("expected the running sequence to fail, got \(String(describing: last))") }
        }
    }
}
