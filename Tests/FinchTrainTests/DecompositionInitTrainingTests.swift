import FinchCore
import FinchFormats
@testable import FinchLoRA
import FinchModels
import FinchQuant
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// `init_lora_weights: olora | pissa` in training (tiny llama, f32): the model starts as the base (the
/// adapter holds W's leading directions, the base the residual), A and B are `DecompositionInit`'s (equal to
/// PEFT's: DecompositionInitTests), the saved adapter is a plain LoRA of rank 2r on the original base that
/// gives the trained model's logits, a run resumes bit for bit, and what cannot work is refused.
final class DecompositionInitTrainingTests: XCTestCase {
    let tokens = [[1, 5, 9, 14, 3, 7, 22, 8, 30, 2], [4, 4, 17, 6, 11, 29, 13, 2, 5, 19]]

    func config(_ method: LoRAInit, steps: Int = 3) -> TrainingConfig {
        var c = TrainingConfig()
        c.loraR = 4; c.loraAlpha = 8; c.loraDropout = 0; c.targetModules = ["all-linear"]; c.initLoRAWeights = method
        c.learningRate = 1e-2; c.lrScheduler = .constant; c.batchSize = 2; c.maxSteps = steps; c.maxGradNorm = 0
        c.seed = 3; c.loggingSteps = 0
        return c
    }

    var data: [TrainingSequence] { tokens.map { TrainingSequence(tokens: $0.map(Int32.init)) } }

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "finch-decomposition-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func relative(_ a: [[[Float]]], _ b: [[[Float]]]) -> Double {
        let x = a.flatMap { $0.flatMap { $0 } }, y = b.flatMap { $0.flatMap { $0 } }
        let scale = y.map { abs(Double($0)) }.max()!
        return zip(x, y).map { abs(Double($0) - Double($1)) }.max()! / scale
    }

    func testStartsAsTheBaseAndSavesAPlainLoRAOnTheOriginalBase() throws {
        XCTAssertEqual(LoRAInit(rawValue: "PiSSA_niter_4"), .pissa(iterations: 4))
        XCTAssertNil(LoRAInit(rawValue: "pissa_niter_x"))
        XCTAssertEqual(LoRAInit(setting: .bool(true)), .kaimingUniform)
        for method in [LoRAInit.olora, .pissa, .pissa(iterations: 2)] {
            let base = try TrainerTests.tinyModel()
            let before = try base.logits(tokens: tokens)
            let module = "model.layers.1.mlp.down_proj"
            let w = base.linearWeightValues(module)
            let model = try TrainerTests.tinyModel()
            let trainer = try Trainer(model: model, config: config(method), train: data)
            let start = try model.logits(tokens: tokens)
            XCTAssertLessThan(relative(start, before), 1e-6, "\(method): base + adapter starts as W")
            let (o, i) = model.linearModules[module]!
            if method != .pissa(iterations: 2) {   // the randomized SVD's start comes from the run's generator
                let want = method == .olora ? try DecompositionInit.olora(weight: w, out: o, in: i, rank: 4, scaling: 2)
                                            : try DecompositionInit.pissa(weight: w, out: o, in: i, rank: 4, scaling: 2)
                let live = model.adapter(named: trainer.adapterName, config: trainer.adapterConfig).modules[module]!
                XCTAssertEqual(live.a.array, want.a)
                XCTAssertEqual(live.b.array, want.b)
                XCTAssertEqual(model.linearWeightValues(module), want.residual, "the base keeps the residual")
            }

            let summary = try trainer.train()
            XCTAssertLessThan(summary.losses.last!, summary.losses.first!)
            let trained = try model.logits(tokens: tokens)
            XCTAssertGreaterThan(relative(trained, before), 1e-3)
            let dir = tempDir()
            try model.adapter(named: trainer.adapterName, config: trainer.adapterConfig).save(to: dir)
            let saved = try AdapterConfig.load(path: dir + "/adapter_config.json")
            XCTAssertEqual(saved.r, 8); XCTAssertEqual(saved.loraAlpha, 16); XCTAssertEqual(saved.initLoRAWeights, "true")
            let fresh = try TrainerTests.tinyModel()   // the original weights
            try fresh.loadAdapter(directory: dir)
            let reloaded = try fresh.logits(tokens: tokens)
            let e = relative(reloaded, trained)
            print("[\(method)] saved adapter on the original base vs the trained model: \(e)")
            XCTAssertLessThan(e, 2e-6, "\(method)")
        }
    }

    /// 4 steps straight vs 2 then resumed from checkpoint-2 (whose adapter is the converted rank-2r one).
    func testResumeContinuesBitForBit() throws {
        let straight = try Trainer(model: try TrainerTests.tinyModel(), config: config(.pissa, steps: 4), train: data).train().losses
        let dir = tempDir()
        var c = config(.pissa, steps: 2); c.saveSteps = 2
        try Trainer(model: try TrainerTests.tinyModel(), config: c, train: data, runDirectory: dir).train()
        c.maxSteps = 4
        let resumed = try Trainer(model: try TrainerTests.tinyModel(), config: c, train: data, runDirectory: dir)
            .train(resumeFrom: dir + "/checkpoint-2").losses
        XCTAssertEqual(resumed, straight)
        var other = c; other.initLoRAWeights = .olora
        XCTAssertThrowsError(try Trainer(model: try TrainerTests.tinyModel(), config: other, train: data).train(resumeFrom: dir + "/checkpoint-2")) {
            XCTAssertTrue("\($0)".contains("not trained from this run's olora start"), "\($0)")
        }
    }

    func testWhatCannotWorkIsRefused() throws {
        var c = config(.olora); c.useDoRA = true
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("use_dora"), "\($0)") }
        c = config(.pissa); c.method = .dpo
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("reference"), "\($0)") }
        c.method = .orpo
        XCTAssertNoThrow(try c.validate())
        // another adapter already relative to the base
        let model = try TrainerTests.tinyModel()
        try model.createAdapter(config: config(.kaimingUniform).adapterConfig, name: "first", seed: 1)
        XCTAssertThrowsError(try model.createAdapter(config: config(.olora).adapterConfig, name: "second", seed: 1)) {
            XCTAssertTrue("\($0)".contains("rewrites the base weights"), "\($0)")
        }
    }
}

extension DecoderModel {
    /// A linear module's base weight values [O, I].
    func linearWeightValues(_ module: String) -> [Float] {
        var out: [Float] = []
        forEachLoRALinear { l in if l.name == module { out = l.base.floatValues().array } }
        if out.isEmpty, let s = linearSlots.first(where: { $0.name == module }), let w = s.get() as? LinearWeight { out = w.floatValues().array }
        return out
    }
}
