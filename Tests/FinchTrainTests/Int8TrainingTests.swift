import FinchModels
import FinchQuant
@testable import FinchTrain
import FinchTestSupport
import Foundation
import XCTest

/// LoRA on an LLM.int8 base (SmolLM2-135M quantized to int8 as it loads, `--quantize int8`)
/// learns the Brindlewick facts: the held-out loss falls.
final class Int8TrainingTests: XCTestCase {
    func testLoRAOnInt8BaseLearns() throws {
        let examples = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples").path
        var c = TrainingConfig()
        c.model = try Fixtures.smolLM2()
        c.quantize = .int8
        c.data = examples + "/brindlewick.jsonl"
        c.evalData = examples + "/brindlewick-eval.jsonl"
        c.loraR = 8; c.loraAlpha = 16; c.targetModules = ["all-linear"]
        c.learningRate = 1e-3; c.batchSize = 4; c.maxSteps = 6; c.evalSteps = 6; c.saveSteps = 0; c.loggingSteps = 0
        let run = try TrainingRun.prepare(config: c)
        XCTAssertTrue(run.trainable.isQuantized)
        var before = LossSum()
        for i in stride(from: 0, to: run.eval.count, by: 4) {
            before = before + (try run.trainable.evaluate(Array(run.eval[i..<min(i + 4, run.eval.count)])))
        }
        var after: Double?
        try run.trainer(runDirectory: nil).train { event in
            if case .evaluation(let e) = event { after = e.loss }
        }
        let a = try XCTUnwrap(after)
        print("[int8 LoRA] held-out loss \(before.mean) -> \(a) after 6 steps")
        XCTAssertLessThan(a, 0.85 * before.mean)
    }
}
