import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// PEFT's `modules_to_save` on T5 (both stacks' `embed_tokens`, copied apart, and `lm_head`) against PEFT 0.21
/// (Tests/Fixtures/t5-modules-to-save from Scripts/fixtures/make_t5_modules_to_save_reference.py) on the tiny original
/// T5 (tied head, rescaled output) and v1.1: the first step's gradient of every tensor, 10 AdamW steps and the tensors
/// after them; the copies switch off with the adapter; what cannot be written (a merged T5 checkpoint) is refused.
final class T5ModulesToSaveTests: XCTestCase {
    struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
    struct Base: Decodable { let batch: Batch }
    struct Expected: Decodable { let losses: [Double]; let learning_rate: Double; let steps: Int }

    func pairs(_ variant: String, start: Int32) throws -> [TrainingSequence] {
        let b = try JSONDecoder().decode(Base.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.required("tiny-t5/\(variant)/expected.json")))).batch
        return (0..<b.input_ids.count).map { i in
            let src = zip(b.input_ids[i], b.attention_mask[i]).filter { $0.1 == 1 }.map(\.0)
            let target = b.labels[i].filter { $0 != -100 }
            return TrainingSequence(tokens: [start] + target, labels: [-100] + target, source: src)
        }
    }

    /// PEFT's trainable tokens on the original T5 (rows of `shared`: both stacks' and the tied head's;
    /// Tests/Fixtures/t5-trainable-tokens from Scripts/fixtures/make_t5_modules_to_save_reference.py): the first
    /// step's gradients and 10 AdamW steps. On v1.1 (untied head) the rows are the embedding's only (PEFT 0.21 puts
    /// them into the untied head too, changing the logits at the start; Finch does not): the start is the base model.
    func testTrainableTokensEqualPEFT() throws {
        let dir = try Fixtures.required("t5-trainable-tokens/original")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json")))
        let m = try T5Model.load(directory: Fixtures.path("tiny-t5/original/hf"))
        try m.loadAdapter(directory: dir + "/adapter")
        XCTAssertEqual(m.activeTokenRows?.indices, [3, 9, 37, 61])
        let batch = try pairs("original", start: Int32(m.config.startTokenId))
        let grads = try SafeTensorsFile(path: dir + "/gradients.safetensors")
        m.zeroGradients()
        let params = m.trainableParameters()
        XCTAssertEqual(Set(params.map(\.name)), Set(grads.tensorNames))
        let loss = try m.forwardBackward(batch, options: TrainingPassOptions())
        var worst = ["loss": abs(loss.mean - e.losses[0]) / e.losses[0]]
        for p in params { worst["gradients"] = max(worst["gradients"] ?? 0, maxRelativeError(p.grad.array, try grads.floats(p.name))) }
        var c = TrainingConfig()
        c.learningRate = e.learning_rate; c.lrScheduler = .constant; c.maxSteps = e.steps; c.maxGradNorm = 0; c.weightDecay = 0
        c.loggingSteps = 0; c.batchSize = batch.count; c.loraDropout = 0
        let summary = try Trainer(model: m, config: c, train: batch).train()
        worst["losses"] = zip(summary.losses, e.losses).map { abs($0 - $1) / $1 }.max()!
        let final = try SafeTensorsFile(path: dir + "/final.safetensors")
        for p in m.trainableParameters() { worst["final"] = max(worst["final"] ?? 0, maxRelativeError(p.value.array, try final.floats(p.name))) }
        print("[t5 trainable tokens]", worst)
        // Measured: loss 6.3e-8, gradients 1.1e-6, losses 1.1e-7, final 2.7e-6; held to ~3×.
        for (k, v) in worst { XCTAssertLessThanOrEqual(v, ["loss": 2e-7, "gradients": 3.5e-6, "losses": 3.3e-7, "final": 8e-6][k]!, k) }

        // v1.1: the rows' start is the base model itself.
        let v11 = try T5Model.load(directory: Fixtures.path("tiny-t5/v1_1/hf"))
        let plain = try T5Model.load(directory: Fixtures.path("tiny-t5/v1_1/hf"))
        var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q", "v"]))
        config.trainableTokenIndices = [3, 9]
        try v11.createAdapter(config: config, name: "default", seed: 1)
        let b = try pairs("v1_1", start: Int32(v11.config.startTokenId))
        let src = b[0].source!.map(Int.init), dec = b[0].tokens.map(Int.init)
        XCTAssertEqual(maxAbsDiff(try v11.logits(source: src, decoderInput: dec).flatMap { $0 }, try plain.logits(source: src, decoderInput: dec).flatMap { $0 }), 0)
    }

    /// Per request (a server's batch: one row the base model, one the adapter): each row's embeddings and head are its
    /// adapter's copies, giving what the model gives with that adapter active, or without it.
    func testPerRequestRowsUseTheirAdaptersCopies() throws {
        for variant in ["original", "v1_1"] {
            let m = try T5Model.load(directory: Fixtures.path("tiny-t5/\(variant)/hf"))
            try m.loadAdapter(directory: Fixtures.required("t5-modules-to-save/\(variant)") + "/adapter", name: "mts")
            let batch = try pairs(variant, start: Int32(m.config.startTokenId))
            let src = batch[0].source!.map(Int.init), dec = Array(batch[0].tokens.map(Int.init).prefix(3))
            let adapted = try m.logits(source: src, decoderInput: dec).last!
            m.setActiveAdapter(nil)
            let plain = try m.logits(source: src, decoderInput: dec).last!
            XCTAssertGreaterThan(maxAbsDiff(adapted, plain), 1e-3, "the copies change the logits")
            let started = try m.start([src, src], capacity: dec.count, reusing: [], adapters: [nil, "mts"])
            let out = try m.step([StepInput(tokens: dec, state: started[0].state), StepInput(tokens: dec, state: started[1].state)], logits: .last,
                                 adapters: [AdapterSpan(rows: 0..<dec.count, adapter: nil), AdapterSpan(rows: dec.count..<(2 * dec.count), adapter: "mts")])
            XCTAssertLessThanOrEqual(maxAbsDiff(Array(out.row(0)), plain), 2e-5, variant)
            XCTAssertLessThanOrEqual(maxAbsDiff(Array(out.row(1)), adapted), 2e-5, variant)
        }
    }

    func testGradientsAndTenStepsEqualPEFT() throws {
        var worst: [String: Double] = [:]
        for variant in ["original", "v1_1"] {
            let dir = try Fixtures.required("t5-modules-to-save/\(variant)")
            let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json")))
            let m = try T5Model.load(directory: Fixtures.path("tiny-t5/\(variant)/hf"))
            try m.loadAdapter(directory: dir + "/adapter")
            XCTAssertEqual(m.activeModuleCopies.keys.sorted(), ["decoder.embed_tokens", "encoder.embed_tokens", "lm_head"])
            let batch = try pairs(variant, start: Int32(m.config.startTokenId))

            let grads = try SafeTensorsFile(path: dir + "/gradients.safetensors")
            m.zeroGradients()
            let params = m.trainableParameters()
            XCTAssertEqual(Set(params.map(\.name)), Set(grads.tensorNames), variant)
            let loss = try m.forwardBackward(batch, options: TrainingPassOptions())
            worst["loss"] = max(worst["loss"] ?? 0, abs(loss.mean - e.losses[0]) / e.losses[0])
            for p in params {
                let err = maxRelativeError(p.grad.array, try grads.floats(p.name))
                worst["gradients"] = max(worst["gradients"] ?? 0, err)
                if !p.name.contains("lora") { print("[t5 modules_to_save] \(variant) \(p.name) gradient: \(err)") }
            }

            var c = TrainingConfig()
            c.learningRate = e.learning_rate; c.lrScheduler = .constant; c.maxSteps = e.steps; c.maxGradNorm = 0; c.weightDecay = 0
            c.loggingSteps = 0; c.batchSize = batch.count; c.loraDropout = 0
            let summary = try Trainer(model: m, config: c, train: batch).train()
            worst["losses"] = max(worst["losses"] ?? 0, zip(summary.losses, e.losses).map { abs($0 - $1) / $1 }.max()!)
            let final = try SafeTensorsFile(path: dir + "/final.safetensors")
            for p in m.trainableParameters() { worst["final"] = max(worst["final"] ?? 0, maxRelativeError(p.value.array, try final.floats(p.name))) }

            // Saved under PEFT's names and shapes, and loaded back with the trained values.
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5-mts-save-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            try m.adapter(named: "default", config: m.adapterConfigs["default"]!).save(to: out)
            let mine = try SafeTensorsFile(path: out + "/adapter_model.safetensors"), theirs = try SafeTensorsFile(path: dir + "/adapter/adapter_model.safetensors")
            XCTAssertEqual(mine.tensorNames.sorted(), theirs.tensorNames.sorted(), variant)
            for n in theirs.tensorNames { XCTAssertEqual(mine.info(n)?.shape, theirs.info(n)?.shape, n) }
            let back = try T5Model.load(directory: Fixtures.path("tiny-t5/\(variant)/hf"))
            try back.loadAdapter(directory: out)
            let s0 = batch[1].source!.map(Int.init), d0 = batch[1].tokens.map(Int.init)
            XCTAssertEqual(maxAbsDiff(try m.logits(source: s0, decoderInput: d0).flatMap { $0 }, try back.logits(source: s0, decoderInput: d0).flatMap { $0 }), 0)

            // Off with the adapter: the frozen embedding and head again.
            let plain = try T5Model.load(directory: Fixtures.path("tiny-t5/\(variant)/hf"))
            m.setActiveAdapter(nil)
            let src = batch[0].source!.map(Int.init), dec = batch[0].tokens.map(Int.init)
            XCTAssertEqual(maxAbsDiff(try m.logits(source: src, decoderInput: dec).flatMap { $0 }, try plain.logits(source: src, decoderInput: dec).flatMap { $0 }), 0)
            m.setActiveAdapter("default")
            XCTAssertThrowsError(try m.saveHuggingFace(to: FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5-mts-\(getpid())").path,
                                                       tokenizer: nil, dtype: .f32)) { err in
                XCTAssertTrue("\(err)".contains("modules_to_save"), "\(err)")
            }
        }
        print("[t5 modules_to_save]", worst)
        // Measured: loss 6.3e-8, gradients 1.1e-6, losses 1.4e-7, final 2.4e-6; held to ~3×.
        for (k, v) in worst { XCTAssertLessThanOrEqual(v, ["loss": 2e-7, "gradients": 3.5e-6, "losses": 4.2e-7, "final": 7.2e-6][k]!, k) }
    }
}
