import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
@testable import FinchTrain
import Foundation
import FinchTestSupport
import XCTest

/// The trainer on the tiny fixture model: exact resume, checkpoints, stop requests, non-finite
/// losses, gradient accumulation; and the 12-step AdamW loss curve of PEFT on SmolLM2.
final class TrainerTests: XCTestCase {
    static func tinyModel() throws -> DecoderModel {
        let dir = Fixtures.path("tiny-llama/hf")
        let config = try LlamaConfig.load(configJSON: dir + "/config.json")
        return try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: .f32)
    }

    /// Seeded sequences of varied length; the first few tokens of each are a masked "prompt".
    static func examples(_ n: Int, vocab: Int, seed: UInt64 = 7) -> [TrainingSequence] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { _ in
            let len = 8 + Int(rng.next() % 24)
            let tokens = (0..<len).map { _ in Int32(rng.next() % UInt64(vocab)) }
            var labels = tokens
            for i in 0..<3 { labels[i] = -100 }
            return TrainingSequence(tokens: tokens, labels: labels)
        }
    }

    static func config(steps: Int) -> TrainingConfig {
        var c = TrainingConfig()
        c.loraR = 4; c.loraAlpha = 8; c.loraDropout = 0.1; c.targetModules = ["all-linear"]
        c.learningRate = 5e-3; c.lrScheduler = .cosine; c.warmupSteps = 3; c.batchSize = 3; c.gradAccum = 2
        c.maxSteps = steps; c.maxGradNorm = 0.5; c.weightDecay = 0.01; c.seed = 11; c.saveSteps = 10
        c.initLoRAWeights = .gaussian
        return c
    }

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "finch-trainer-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    /// 20 steps straight vs 10, then a new process-like start (fresh model and trainer) resumed
    /// from checkpoint-10 for 10 more: the same 20 losses and the same final adapter, bit for bit.
    func testResumedRunEqualsUninterruptedRun() throws {
        let m1 = try Self.tinyModel()
        let data = Self.examples(17, vocab: m1.vocabSize)
        let straight = tempDir()
        let full = try Trainer(model: m1, config: Self.config(steps: 20), train: data, runDirectory: straight).train()
        XCTAssertEqual(full.losses.count, 20)
        XCTAssertTrue(full.losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(full.losses.suffix(3).reduce(0, +), full.losses.prefix(3).reduce(0, +), "the loss should fall")

        let split = tempDir()
        var first10 = Self.config(steps: 20)
        let t1 = try Trainer(model: try Self.tinyModel(), config: first10, train: data, runDirectory: split)
        var seen = 0
        let part1 = try t1.train { if case .step = $0 { seen += 1; if seen == 10 { t1.requestStop() } } }
        XCTAssertTrue(part1.interrupted)
        XCTAssertEqual(part1.steps, 10)
        first10.maxSteps = 20
        let t2 = try Trainer(model: try Self.tinyModel(), config: first10, train: data, runDirectory: split)
        let part2 = try t2.train(resumeFrom: split + "/checkpoint-10")
        XCTAssertEqual(part2.losses, full.losses, "resumed losses differ")
        let a = try SafeTensorsFile(path: straight + "/adapter_model.safetensors")
        let b = try SafeTensorsFile(path: split + "/adapter_model.safetensors")
        XCTAssertEqual(a.tensorNames.sorted(), b.tensorNames.sorted())
        for n in a.tensorNames { XCTAssertTrue(try a.floats(n) == b.floats(n), n) }
        // metrics.jsonl of the resumed run has each step once.
        let lines = try String(contentsOfFile: split + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.contains("\"grad_norm\"") }.count, 20)
        XCTAssertTrue(FileManager.default.fileExists(atPath: split + "/loss.svg"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: split + "/train_config.json"))
    }

    /// A checkpoint is a PEFT adapter directory plus optimizer and trainer state; only the last
    /// `save_total_limit` are kept.
    func testCheckpointsRotateAndAreAdapters() throws {
        let m = try Self.tinyModel()
        var c = Self.config(steps: 8)
        c.saveSteps = 2; c.saveTotalLimit = 2
        let dir = tempDir()
        try Trainer(model: m, config: c, train: Self.examples(9, vocab: m.vocabSize), runDirectory: dir).train()
        XCTAssertEqual(Checkpoint.list(runDirectory: dir).map(\.step), [6, 8])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoint-8").sorted()
        XCTAssertEqual(names, ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"])
        let reloaded = try LoRAAdapter.load(directory: dir + "/checkpoint-8", linears: m.linearModules)
        XCTAssertEqual(reloaded.modules.count, 14)
        // Nothing hidden is left: no temporary, replaced or half-deleted checkpoint.
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.hasPrefix(".checkpoint-") })
    }

    /// Resuming with other data or other LoRA settings is refused with a reason.
    func testResumeRefusesOtherSettings() throws {
        let m = try Self.tinyModel()
        let data = Self.examples(9, vocab: m.vocabSize)
        let dir = tempDir()
        var c = Self.config(steps: 2); c.saveSteps = 2
        try Trainer(model: m, config: c, train: data, runDirectory: dir).train()
        var other = c; other.loraR = 8
        XCTAssertThrowsError(try Trainer(model: try Self.tinyModel(), config: other, train: data).train(resumeFrom: dir)) {
            XCTAssertTrue("\($0)".contains("lora_r"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer(model: try Self.tinyModel(), config: c, train: Array(data.dropLast())).train(resumeFrom: dir)) {
            XCTAssertTrue("\($0)".contains("training data differs"), "\($0)")
        }
    }

    /// A loss that becomes NaN stops the run with an error naming the last good checkpoint.
    func testNonFiniteLossStopsTheRun() throws {
        let m = try Self.tinyModel()
        var c = Self.config(steps: 6)
        c.learningRate = 1e35; c.maxGradNorm = 0; c.warmupSteps = 0; c.lrScheduler = .constant; c.saveSteps = 1
        c.loraDropout = 0
        let dir = tempDir()
        XCTAssertThrowsError(try Trainer(model: m, config: c, train: Self.examples(6, vocab: m.vocabSize),
                                         runDirectory: dir).train()) { error in
            guard case TrainError.nonFiniteLoss(let step, _, let last, _) = error else { return XCTFail("\(error)") }
            XCTAssertGreaterThan(step, 1)
            XCTAssertEqual(last, dir + "/checkpoint-\(step - 1)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/adapter_model.safetensors"))
    }

    /// Two micro-batches with the loss scaled by 1 / (all their counted tokens) give the
    /// gradient of one batch holding both.
    func testGradientAccumulationEqualsOneBigBatch() throws {
        let m = try Self.tinyModel()
        var c = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear)
        c.initLoRAWeights = "gaussian"
        try m.createAdapter(config: c, seed: 3)
        for p in m.trainableParameters() where p.name.contains("lora_B") {   // a non-trivial adapter
            var rng = SeededRandom(seed: 5)
            for i in 0..<p.value.count { p.value[i] = 0.05 * rng.nextGaussian() }
        }
        let data = Self.examples(6, vocab: m.vocabSize)
        m.zeroGradients()
        let whole = try m.forwardBackward(data)
        let g1 = m.trainableParameters().map { $0.grad.array }
        m.zeroGradients()
        let total = data.reduce(0) { $0 + $1.lossTokenCount }
        let a = try m.forwardBackward(Array(data[0..<2]), lossScale: 1 / Float(total))
        let b = try m.forwardBackward(Array(data[2...]), lossScale: 1 / Float(total))
        let g2 = m.trainableParameters().map { $0.grad.array }
        XCTAssertEqual((a + b).mean, whole.mean, accuracy: 1e-6)
        for (x, y) in zip(g1, g2) {
            let scale = x.map { abs($0) }.max()!
            XCTAssertLessThanOrEqual(zip(x, y).map { abs($0 - $1) }.max()!, 1e-5 * max(scale, 1e-3))
        }
    }

    /// PEFT's 12 AdamW steps from the lora_all_linear_r8 adapter on SmolLM2 (lr 1e-3, constant,
    /// no decay, no clipping, the same batch each step).
    ///
    /// Relative differences measured on an AVX-512 host, 2 threads (Tests/Fixtures/smollm2/peft from
    /// Scripts/fixtures/make_peft_goldens.py): steps 1-7 ≤ 4.2e-6, step 8 4.7e-5; each step is held to
    /// ~3× its figure: 1.3e-5 for steps 1-7, 1.5e-4 for step 8. From step 9 on the curve is chaotic:
    /// PyTorch + PEFT itself, started from the same adapter with every value perturbed by a relative
    /// 1e-8, moves step 9 by 7e-4 and step 10 by 2.2e-2 (Scripts/checks/training/loss_curve_sensitivity.py), so
    /// no implementation that is not bit-identical to PyTorch can hold 1e-3 there. Finch (whose
    /// gradients differ from PyTorch's by 2e-4, far more than 1e-8) measured 2.8e-3, 4.6e-2, 3.2e-3 and
    /// 6.0e-3 at steps 9-12; they are held to ~3× those. A wrong optimizer fails from step 2 on.
    static let lossCurveTolerance: [Double] = Array(repeating: 1.3e-5, count: 7) + [1.5e-4, 8.5e-3, 0.14, 1e-2, 1.8e-2]

    func testTwelveStepLossCurveMatchesPEFT() throws {
        struct Curve: Decodable { let losses: [Double] }
        struct Golden: Decodable { let batch_ids: [[Int32]] }
        let ref = try Fixtures.required("smollm2/peft")
        let curve = try JSONDecoder().decode(Curve.self, from: Data(contentsOf: URL(fileURLWithPath: ref + "/loss_curve_lora_all_linear_r8.json")))
        let g = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: ref + "/lora_all_linear_r8/golden.json")))
        let lm = try LoadedModel.load(try Fixtures.smolLM2(), dtype: .f32)
        try lm.model.loadAdapter(directory: ref + "/lora_all_linear_r8")
        var c = TrainingConfig()
        c.learningRate = 1e-3; c.lrScheduler = .constant; c.maxGradNorm = 0; c.weightDecay = 0
        c.batchSize = 2; c.maxSteps = 12; c.loraDropout = 0
        let summary = try Trainer(model: lm.model, config: c, train: g.batch_ids.map { TrainingSequence(tokens: $0) }).train()
        for (k, (got, want)) in zip(summary.losses, curve.losses).enumerated() {
            print("step \(k + 1): Finch \(got)  PEFT \(want)  rel \(abs(got - want) / want)")
            XCTAssertEqual(got, want, accuracy: Self.lossCurveTolerance[k] * want, "step \(k + 1)")
        }
        XCTAssertEqual(summary.losses.count, 12)
    }
}
