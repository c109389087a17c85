import FinchCore
import FinchModels
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// Preference training with the rest of the trainer, as `finch train` prepares it (`TrainingRun`):
/// gradient checkpointing gives the same losses to the bit; DoRA, rsLoRA, FP4 / NF4 / LLM.int8 bases,
/// the 8-bit and paged optimizers and gradient accumulation train (finite losses that fall) for DPO,
/// ORPO and KTO.
final class PreferenceMatrixTests: XCTestCase {
    func losses(_ method: TrainingMethod, _ change: (inout TrainingConfig) -> Void = { _ in }) throws -> [Double] {
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-llama/hf")
        c.data = Fixtures.path(method == .kto ? "kto/data/unpaired.jsonl" : "dpo/data/standard.jsonl")
        c.method = method; c.batchSize = 2; c.maxSteps = 6; c.learningRate = 5e-3; c.loraR = 4; c.seed = 5; c.loggingSteps = 1
        change(&c)
        let trainer = try TrainingRun.prepare(config: c).trainer(runDirectory: nil)
        var out: [Double] = []
        try trainer.train { if case .step(let m, _) = $0 { out.append(m.loss) } }
        return out
    }

    func testCheckpointingIsExactAndEveryKindTrains() throws {
        _ = try Fixtures.required("kto")
        let kinds: [(String, (inout TrainingConfig) -> Void)] = [
            ("dora + rslora", { $0.useDoRA = true; $0.useRSLoRA = true }),
            ("fp4 base", { $0.quantize = .fp4 }),
            ("nf4 double-quant base, paged 8-bit optimizer", { $0.quantize = .nf4; $0.doubleQuant = true; $0.optimizer = .pagedAdamW8bit }),
            ("int8 base", { $0.quantize = .int8 }),
            ("adamw_8bit, grad accum 2", { $0.optimizer = .adamw8bit; $0.gradAccum = 2 }),
        ]
        for method in [TrainingMethod.dpo, .orpo, .kto] {
            let plain = try losses(method)
            XCTAssertEqual(try losses(method) { $0.gradientCheckpointing = true }, plain, "\(method): checkpointing changes nothing")
            for (name, change) in kinds {
                let l = try losses(method, change)
                XCTAssertEqual(l.count, 6, "\(method) \(name)")
                XCTAssertTrue(l.allSatisfy(\.isFinite), "\(method) \(name): \(l)")
                // Batches alternate (and KTO's hold different examples), so compare the same batch a few steps on.
                XCTAssertLessThan(l[4], l[0], "\(method) \(name): the loss falls: \(l)")
                XCTAssertNotEqual(l, plain, "\(method) \(name) is another run")
            }
        }
    }
}
