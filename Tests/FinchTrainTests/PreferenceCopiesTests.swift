import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTrain
import FinchTestSupport
import XCTest

/// A sequence objective (the preference methods' pass: DPO, SimPO, ORPO, KTO) with modules_to_save copies and trainable
/// tokens: the copies' gradients are those of the objective, checked by central differences on the tiny llama (untied
/// head) and qwen2 (tied: the trainable tokens' rows serve the head too), per-sequence and per-row weights.
final class PreferenceCopiesTests: XCTestCase {
    func testCopiesGetTheObjectivesGradient() throws {
        var worst = 0.0
        for family in ["llama", "qwen2"] { for mode in ["modules-to-save", "trainable-tokens"] { for perRow in [false, true] {
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj", "v_proj"]))
            if mode == "modules-to-save" { config.modulesToSave = ["embed_tokens", "lm_head"] } else { config.trainableTokenIndices = [5, 9, 17, 33] }
            try lm.model.createAdapter(config: config, name: "default", seed: 3)
            var random = SeededRandom(seed: 11)
            for p in lm.model.trainableParameters() { for i in 0..<p.value.count { p.value[i] += 0.05 * random.nextGaussian() } }
            lm.model.adapterParametersChanged()
            let batch = [TrainingSequence(tokens: [1, 5, 9, 17, 33, 40, 9, 5], labels: [-100, -100, -100, 17, 33, 40, 9, 5]),
                         TrainingSequence(tokens: [1, 33, 17, 5, 9, 2], labels: [-100, -100, 17, 5, 9, 2])]
            let weights = [0.7, -1.3]
            let rowWeights: [Double] = [0.4, -0.5, 0.6, -0.7, 0.8, -0.4, 0.5, -0.6, 0.7, -0.8, 0.4, -0.5, 0.6, -0.7]
            let objective: SequenceObjective = { scores in perRow ? .perRow(Array(rowWeights.prefix(scores.rows.count))) : .perSequence(weights) }
            func loss() throws -> Double {
                let s = try lm.model.sequenceLogProbs(batch)
                var total = 0.0
                if perRow {
                    for (r, w) in zip(s.rows, rowWeights) { total += Double(r) * w }
                } else {
                    for (v, w) in zip(s.sums, weights) { total += v * w }
                }
                return total
            }
            lm.model.zeroGradients()
            _ = try lm.model.forwardBackward(batch, options: TrainingPassOptions(), objective: objective)
            for p in lm.model.trainableParameters() where !p.name.contains("lora") {
                // The largest gradient entries, where a difference is well above f32 rounding.
                let order = (0..<p.grad.count).sorted { abs(p.grad[$0]) > abs(p.grad[$1]) }
                for i in order.prefix(6) {
                    let h: Float = 1e-2, v = p.value[i]
                    p.value[i] = v + h; lm.model.adapterParametersChanged(); let up = try loss()
                    p.value[i] = v - h; lm.model.adapterParametersChanged(); let down = try loss()
                    p.value[i] = v; lm.model.adapterParametersChanged()
                    let numeric = (up - down) / Double(2 * h), analytic = Double(p.grad[i])
                    let err = abs(numeric - analytic) / max(abs(numeric), 1e-3)
                    worst = max(worst, err)
                    XCTAssertLessThanOrEqual(err, 2e-3, "\(family) \(mode) perRow \(perRow) \(p.name)[\(i)]: \(analytic) vs \(numeric)")
                }
            }
        } } }
        // Measured 5.6e-4 (f32 central differences, h = 1e-2); held to ~3.5×.
        print("[preference copies] worst relative difference to central differences:", worst)
    }

    /// DPO trains an adapter with modules_to_save (the reference: the base, copies off) and one with trainable tokens.
    func testDPOTrainsCopiesAndTokens() throws {
        for mode in ["modules-to-save", "trainable-tokens"] {
            let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
            var c = TrainingConfig()
            c.method = .dpo; c.maxSteps = 3; c.batchSize = 2; c.loggingSteps = 0; c.learningRate = 1e-2; c.loraDropout = 0
            if mode == "modules-to-save" { c.modulesToSave = ["embed_tokens", "lm_head"] } else { c.trainableTokenIndices = [7, 8, 9] }
            XCTAssertNoThrow(try c.validate())
            let pairs = (0..<4).map { i in PreferencePair(prompt: [1, Int32(5 + i), 6], chosen: [7, 8, 9, 2], rejected: [Int32(20 + i), 21, 2]) }
            let trainer = try Trainer(model: lm.model, config: c, pairs: pairs)
            let before = lm.model.activeModuleCopies.values.map { $0.value.array }
            let s = try trainer.train()
            XCTAssertEqual(s.losses.count, 3)
            XCTAssertTrue(s.losses.allSatisfy(\.isFinite))
            XCTAssertLessThan(s.losses.last!, s.losses.first!, "\(mode): \(s.losses)")
            XCTAssertNotEqual(before, lm.model.activeModuleCopies.values.map { $0.value.array }, "\(mode): the copies trained")
        }
    }
}
