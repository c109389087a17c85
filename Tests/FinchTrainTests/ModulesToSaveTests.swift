import FinchCore
import FinchFormats
@testable import FinchLoRA
import FinchModels
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// PEFT's `modules_to_save` (embed_tokens and lm_head trained in full beside the adapter) and
/// `trainable_token_indices` (rows 3, 5, 7, 250 of the embedding trained) against PEFT 0.21 (Tests/Fixtures/modules-to-save
/// and trainable-tokens from Scripts/fixtures/make_modules_to_save_reference.py): tiny llama (untied head), qwen2
/// (tied: modules_to_save's two copies apart, as PEFT keeps them; the trained rows also the head's), gemma3 (its
/// embedding scaled) and gpt2 (transformer.wte, learned positions). Finch loads PEFT's
/// adapter with its logits, the first step's gradients of every tensor and 10 AdamW steps are PEFT's; a run saves the
/// copies as PEFT does, they load back, switch off with the adapter and are in the merged export; what cannot work is refused.
final class ModulesToSaveTests: XCTestCase {
    static let cases = ["modules-to-save", "trainable-tokens"]
    static let families = ["llama", "qwen2", "gemma3", "gpt2"]
    /// Measured (max over the four families and both cases, relative to each tensor's largest value): logits 1.5e-6,
    /// gradients 2.3e-6, losses 1.8e-7, tensors after 10 steps 3.9e-5 (modules_to_save's qwen2 head copy: rows of tokens
    /// that never occur get gradients near AdamW's epsilon, where float rounding moves the update most). Held to ~3×.
    static let tolerance: [String: Double] = ["logits": 4.5e-6, "gradients": 7e-6, "losses": 5.5e-7, "final": 1.2e-4]

    func batch(_ dir: String) throws -> (e: [String: Any], tokens: [[Int]]) {
        let e = try PreferenceReference.json(dir + "/expected.json")
        return (e, try XCTUnwrap(e["batch"] as? [[Int]]))
    }

    func testLoadsPEFTsAdapterWithItsLogitsAndGradients() throws {
        var worst: [String: Double] = [:]
        for fixture in Self.cases { for family in Self.families {
            let dir = try Fixtures.required(fixture) + "/\(family)"
            let (e, tokens) = try batch(dir)
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            try lm.model.loadAdapter(directory: dir + "/adapter")
            let embedding = try XCTUnwrap(lm.model.inputEmbeddingName), tied = try XCTUnwrap(e["tied"] as? Bool)
            XCTAssertEqual(lm.model.activeModuleCopies.keys.sorted(),
                           fixture == "modules-to-save" || tied ? ["lm_head", embedding].sorted() : [embedding], family)
            let logits = try lm.causal.logits(tokens: tokens).flatMap { $0.flatMap { $0 } }
            let want = try SafeTensorsFile(path: dir + "/logits.safetensors").floats("logits")
            worst["logits"] = max(worst["logits"] ?? 0, maxRelativeError(logits, want))

            let grads = try SafeTensorsFile(path: dir + "/gradients.safetensors")
            lm.model.zeroGradients()
            let params = lm.model.trainableParameters()
            XCTAssertEqual(Set(params.map(\.name)), Set(grads.tensorNames), family)
            _ = try lm.model.forwardBackward(tokens.map { TrainingSequence(tokens: $0.map(Int32.init)) }, options: TrainingPassOptions())
            for p in params {
                let e = maxRelativeError(p.grad.array, try grads.floats(p.name))
                worst["gradients"] = max(worst["gradients"] ?? 0, e)
                if !p.name.contains("lora") { print("[modules_to_save] \(fixture) \(family) \(p.name) gradient: \(e)") }
            }
        } }
        print("[modules_to_save]", worst)
        for (k, v) in worst { XCTAssertLessThanOrEqual(v, Self.tolerance[k]!, k) }
    }

    func testTenStepsEqualPEFT() throws {
        var worst: [String: Double] = [:]
        for fixture in Self.cases { for family in Self.families {
            let dir = try Fixtures.required(fixture) + "/\(family)"
            let (e, tokens) = try batch(dir)
            let want = try XCTUnwrap(e["losses"] as? [Double])
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            try lm.model.loadAdapter(directory: dir + "/adapter")
            var c = TrainingConfig()
            c.learningRate = e["learning_rate"] as! Double; c.lrScheduler = .linear; c.warmupSteps = e["warmup_steps"] as! Int
            c.maxSteps = e["steps"] as? Int; c.maxGradNorm = 0; c.weightDecay = 0; c.loggingSteps = 0; c.batchSize = tokens.count
            let summary = try Trainer(model: lm.model, config: c, train: tokens.map { TrainingSequence(tokens: $0.map(Int32.init)) }).train()
            XCTAssertEqual(summary.losses.count, want.count)
            worst["losses"] = max(worst["losses"] ?? 0, zip(summary.losses, want).map { abs($0 - $1) / abs($1) }.max()!)
            let final = try SafeTensorsFile(path: dir + "/final.safetensors")
            var compared = 0
            for p in lm.model.trainableParameters() {
                let e = maxRelativeError(p.value.array, try final.floats(p.name))
                if e > 1e-5 { print("[modules_to_save] \(fixture) \(family) \(p.name) after 10 steps: \(e)") }
                worst["final"] = max(worst["final"] ?? 0, e)
                compared += 1
            }
            XCTAssertEqual(compared, final.tensorNames.count, family)
        } }
        print("[modules_to_save]", worst)
        for (k, v) in worst { XCTAssertLessThanOrEqual(v, Self.tolerance[k]!, k) }
    }

    /// `modules_to_save: [embed_tokens, lm_head]` from the settings on the tied qwen2: the copies start as the
    /// base, train, are saved under PEFT's names, load back with the same logits, are off with the adapter
    /// off, and the merged export (a separate head: the copies are apart) reloads with the trained logits.
    func testARunSavesItsCopiesAndTheyLoadBack() throws {
        let out = NSTemporaryDirectory() + "finch-mts-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        let lm = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        let ids = [[1, 17, 42, 99, 7, 250, 3, 64, 128, 5, 300, 11]]
        let before = try lm.causal.logits(tokens: ids)
        var c = TrainingConfig()
        c.loraR = 4; c.loraAlpha = 8; c.targetModules = ["q_proj", "v_proj"]; c.modulesToSave = ["embed_tokens", "lm_head"]
        c.learningRate = 1e-2; c.lrScheduler = .constant; c.batchSize = 1; c.maxSteps = 3; c.loggingSteps = 0; c.loraDropout = 0
        let trainer = try Trainer(model: lm.model, config: c, train: ids.map { TrainingSequence(tokens: $0.map(Int32.init)) })
        XCTAssertEqual(try lm.causal.logits(tokens: ids), before, "the copies start as the base")
        let summary = try trainer.train()
        XCTAssertLessThan(summary.losses.last!, summary.losses.first!)
        let trained = try lm.causal.logits(tokens: ids)
        try lm.model.adapter(named: trainer.adapterName, config: trainer.adapterConfig).save(to: out + "/adapter")
        let file = try SafeTensorsFile(path: out + "/adapter/adapter_model.safetensors")
        XCTAssertTrue(file.contains("base_model.model.model.embed_tokens.weight"))
        XCTAssertTrue(file.contains("base_model.model.lm_head.weight"))
        XCTAssertEqual(try AdapterConfig.load(path: out + "/adapter/adapter_config.json").modulesToSave, ["embed_tokens", "lm_head"])

        let fresh = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        try fresh.model.loadAdapter(directory: out + "/adapter")
        XCTAssertLessThanOrEqual(maxRelativeError(try fresh.causal.logits(tokens: ids).flatMap { $0.flatMap { $0 } },
                                             trained.flatMap { $0.flatMap { $0 } }), 1e-6)
        fresh.model.setActiveAdapter(nil)
        XCTAssertEqual(try fresh.causal.logits(tokens: ids), before, "adapter off: the frozen embedding and head")
        fresh.model.setActiveAdapter("default")
        try fresh.model.saveHuggingFace(to: out + "/merged", tokenizer: fresh.tokenizer)
        let merged = try LoadedModel.load(out + "/merged")
        XCTAssertLessThanOrEqual(maxRelativeError(try merged.causal.logits(tokens: ids).flatMap { $0.flatMap { $0 } },
                                             trained.flatMap { $0.flatMap { $0 } }), 1e-5)
    }

    /// `trainable_token_indices` from the settings on the tied qwen2: only those rows move (in the embedding and
    /// the head alike), they are saved under PEFT's name, load back with the trained logits, and resume bit for bit.
    func testARunTrainsOnlyItsTokenRows() throws {
        let out = NSTemporaryDirectory() + "finch-tokens-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        let ids = [[1, 17, 42, 99, 7, 250, 3, 64, 128, 5, 300, 11]]
        var c = TrainingConfig()
        c.loraR = 4; c.loraAlpha = 8; c.targetModules = ["q_proj"]; c.trainableTokenIndices = [17, 42, 301]
        c.learningRate = 1e-2; c.lrScheduler = .constant; c.batchSize = 1; c.maxSteps = 4; c.loggingSteps = 0; c.loraDropout = 0
        let data = ids.map { TrainingSequence(tokens: $0.map(Int32.init)) }
        let lm = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        let base = lm.model.copyableModules["model.embed_tokens"]!.floatValues().array
        let trainer = try Trainer(model: lm.model, config: c, train: data)
        let straight = try trainer.train().losses
        let merged = try XCTUnwrap(lm.model.activeTokenRows?.merged).value.array
        for t in 0..<320 {
            let moved = merged[(t * 64)..<((t + 1) * 64)] != base[(t * 64)..<((t + 1) * 64)]
            XCTAssertEqual(moved, [17, 42, 301].contains(t), "row \(t)")
        }
        XCTAssertTrue(lm.model.activeModuleCopies["lm_head"] === lm.model.activeModuleCopies["model.embed_tokens"], "the tied head takes the rows")
        let trained = try lm.causal.logits(tokens: ids)
        try lm.model.adapter(named: trainer.adapterName, config: trainer.adapterConfig).save(to: out + "/adapter")
        XCTAssertTrue(try SafeTensorsFile(path: out + "/adapter/adapter_model.safetensors")
            .contains("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"))
        let fresh = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        try fresh.model.loadAdapter(directory: out + "/adapter")
        XCTAssertEqual(try fresh.causal.logits(tokens: ids), trained)

        var first = c; first.maxSteps = 2; first.saveSteps = 2
        try Trainer(model: try LoadedModel.load(Fixtures.path("tiny-qwen2/hf")).model, config: first, train: data, runDirectory: out + "/run").train()
        first.maxSteps = 4
        let resumed = try Trainer(model: try LoadedModel.load(Fixtures.path("tiny-qwen2/hf")).model, config: first, train: data,
                                  runDirectory: out + "/run").train(resumeFrom: out + "/run/checkpoint-2").losses
        XCTAssertEqual(resumed, straight)
    }

    /// Served per request (`finch serve`): one pass over rows of the base, of an adapter with modules_to_save
    /// copies and of one with trainable tokens gives each row what a pass with that adapter alone gives.
    func testPerRequestRowsUseTheirAdaptersEmbeddingAndHead() throws {
        let lm = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        var a = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(["q_proj"]))
        a.modulesToSave = ["embed_tokens", "lm_head"]
        let copies = try lm.model.createAdapter(config: a, name: "copies", seed: 1)
        for c in copies.copies.values { for e in 0..<c.value.count { c.value[e] += 0.01 * Float(e % 7) - 0.03 } }
        a.modulesToSave = []; a.trainableTokenIndices = [17, 42]
        let rows = try lm.model.createAdapter(config: a, name: "rows", seed: 2)
        for e in 0..<rows.tokenRows!.value.count { rows.tokenRows!.value[e] += 0.05 }
        lm.model.setActiveAdapter("rows"); lm.model.adapterParametersChanged()
        let prompts = [[1, 17, 42, 99], [7, 42, 3], [17, 5, 11, 250, 6]]
        func alone(_ adapter: String?, _ prompt: [Int]) throws -> [Float] {
            lm.model.setActiveAdapter(adapter)
            let s = try lm.model.start([prompt], capacity: 8)
            return try lm.model.step([StepInput(tokens: s[0].input, state: s[0].state)], logits: .all).values.array
        }
        let names: [String?] = ["copies", nil, "rows"]
        let want = try zip(names, prompts).map { try alone($0, $1) }
        lm.model.setActiveAdapter("copies")   // per-row routing ignores the active adapter
        let started = try lm.model.start(prompts, capacity: 8)
        var spans: [AdapterSpan] = [], row = 0
        for (name, p) in zip(names, prompts) { spans.append(AdapterSpan(rows: row..<(row + p.count), adapter: name)); row += p.count }
        let got = try lm.model.step(started.map { StepInput(tokens: $0.input, state: $0.state) }, logits: .all, adapters: spans)
        let v = lm.model.vocabSize
        var offset = 0
        for (i, w) in want.enumerated() {
            let part = Array(got.values.array[(offset * v)..<(offset * v + w.count)])
            XCTAssertLessThanOrEqual(maxRelativeError(part, w), 1e-6, "\(names[i] ?? "base")")
            offset += prompts[i].count
        }
        XCTAssertNotEqual(want[0], try alone(nil, prompts[0]), "the copies change the logits")
    }

    func testWhatCannotWorkIsRefused() throws {
        let lm = try LoadedModel.load(try Fixtures.required("tiny-llama/hf"))
        var a = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(["q_proj"]))
        a.modulesToSave = ["norm"]
        XCTAssertThrowsError(try lm.model.createAdapter(config: a, seed: 1)) {
            XCTAssertTrue("\($0)".contains("modules_to_save names 'norm'") && "\($0)".contains("lm_head"), "\($0)")
        }
        let t5 = try LoadedModel.load(try Fixtures.required("tiny-t5/v1_1/hf"))
        a.targetModules = .names(["q"]); a.modulesToSave = ["final_layer_norm"]
        // T5: shared, each stack's embed_tokens and lm_head.
        XCTAssertThrowsError(try t5.model.createAdapter(config: a, seed: 1)) {
            XCTAssertTrue("\($0)".contains("modules_to_save names 'final_layer_norm'") && "\($0)".contains("encoder.embed_tokens"), "\($0)")
        }
        var c = TrainingConfig()
        c.modulesToSave = ["lm_head"]; c.method = .dpo
        XCTAssertNoThrow(try c.validate(), "the preference methods train copies too (PreferenceCopiesTests)")
        // trainable tokens: rows of the input embedding only, in the vocabulary, not beside its modules_to_save copy
        let dir = NSTemporaryDirectory() + "finch-mts-tokens-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "trainable_token_indices": {"embed_tokens": [3], "lm_head": [5]}}"#
            .write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AdapterConfig.load(path: dir + "/adapter_config.json")) {
            XCTAssertTrue("\($0)".contains("trainable_token_indices names 2 modules"), "\($0)")
        }
        var t = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(["q_proj"]))
        t.trainableTokenIndices = [3, 320]
        XCTAssertThrowsError(try lm.model.createAdapter(config: t, name: "rows", seed: 1)) { XCTAssertTrue("\($0)".contains("outside the vocabulary"), "\($0)") }
        t.trainableTokenIndices = [3]; t.trainableTokenModule = "lm_head"
        XCTAssertThrowsError(try lm.model.createAdapter(config: t, name: "rows", seed: 1)) { XCTAssertTrue("\($0)".contains("input embedding"), "\($0)") }
        t.trainableTokenModule = nil; t.modulesToSave = ["embed_tokens"]
        XCTAssertThrowsError(try lm.model.createAdapter(config: t, name: "rows", seed: 1)) { XCTAssertTrue("\($0)".contains("keep one"), "\($0)") }
        // on a tied model the head shares the rows: a head copy beside them would never be used
        t.modulesToSave = ["lm_head"]
        XCTAssertNoThrow(try LoadedModel.load(try Fixtures.required("tiny-llama/hf")).model.createAdapter(config: t, name: "rows", seed: 1))
        let tied = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        XCTAssertThrowsError(try tied.model.createAdapter(config: t, name: "rows", seed: 1)) { XCTAssertTrue("\($0)".contains("shares (tied)"), "\($0)") }
    }
}
