import FinchModels
@testable import FinchTrain
import FinchTestSupport
import Foundation
import XCTest

/// LoRA on the real Gemma 3 270M (the PyPI GGUF) learns the Brindlewick facts: the held-out
/// loss falls, with Gemma's turn format from Examples/gemma-chat-template.jinja.
final class Gemma3TrainingTests: XCTestCase {
    func testLoRAOnGemma3Learns() throws {
        let examples = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples").path
        var c = TrainingConfig()
        c.model = try Fixtures.gemma3()
        c.chatTemplate = examples + "/gemma-chat-template.jinja"
        c.data = examples + "/brindlewick.jsonl"
        c.evalData = examples + "/brindlewick-eval.jsonl"
        c.loraR = 8; c.loraAlpha = 16; c.targetModules = ["all-linear"]
        c.learningRate = 1e-3; c.batchSize = 4; c.maxSteps = 6; c.evalSteps = 6; c.saveSteps = 0; c.loggingSteps = 0
        let run = try TrainingRun.prepare(config: c)
        XCTAssertEqual(run.trainable.architecture, "gemma3")
        var before = LossSum()
        for i in stride(from: 0, to: run.eval.count, by: 4) {
            before = before + (try run.trainable.evaluate(Array(run.eval[i..<min(i + 4, run.eval.count)])))
        }
        var after: Double?
        try run.trainer(runDirectory: nil).train { event in
            if case .evaluation(let e) = event { after = e.loss }
        }
        let a = try XCTUnwrap(after)
        print("[gemma3 LoRA] held-out loss \(before.mean) -> \(a) after 6 steps")
        XCTAssertLessThan(a, 0.7 * before.mean)
    }
}
