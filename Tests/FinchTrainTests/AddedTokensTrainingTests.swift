import FinchCore
import FinchFormats
@testable import FinchLoRA
@testable import FinchModels
import FinchTokenizer
@testable import FinchTrain
import FinchTestSupport
import XCTest

// Dimension letters: V vocabulary (320 before, 323 after), C hidden size (64).

/// Adding tokens (issue 32 item 2) against transformers 5.24 and PEFT 0.21 (Tests/Fixtures/added-tokens from
/// Scripts/fixtures/make_added_tokens_adapters.py): <|user|>, <|end|> added as special tokens and "zq" as a plain one to
/// the tiny llama (untied head) and qwen2 (tied) checkpoints. The vocabulary grows as `resize_token_embeddings` grows it
/// (new rows drawn around the old rows' mean with covariance 10⁻⁹·Σ); PEFT's adapters trained on such a model (LoRA alone,
/// modules_to_save, trainable tokens; the grown embedding and head saved with them) load with their tokenizer and their
/// logits; Finch saves the same tensors PEFT saves, which load back; a run adds a chat template's markers and saves
/// its tokenizer with every adapter.
final class AddedTokensTrainingTests: XCTestCase {
    static let families = ["llama", "qwen2"]
    static let modes = ["lora", "modules-to-save", "trainable-tokens"]
    static let special = ["<|user|>", "<|end|>"], plain = ["zq"]

    func growth(_ family: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.required("added-tokens/\(family)/growth.safetensors"))
    }

    /// The new rows' mean equals transformers' (the old rows' mean), each drawn row is within 6 of the draw's
    /// standard deviations √(10⁻⁹·Σⱼⱼ) of it (as transformers' rows are), and a tied head takes the embedding's.
    func testNewRowsAreDrawnAroundTheMeanAsTransformersDrawsThem() throws {
        for family in Self.families {
            let g = try growth(family)
            for seed: UInt64? in [nil, 7] {
                let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
                let ids = try lm.addTokens(special: Self.special, plain: Self.plain, seed: seed ?? 0)
                XCTAssertEqual(ids, [320, 321, 322], family)
                XCTAssertEqual(lm.model.vocabSize, 323, family)
                XCTAssertEqual(lm.tokenizer.encode("<|user|>zq<|end|>", addSpecialTokens: false), [320, 322, 321], family)
                let model = try XCTUnwrap(lm.model as? DecoderModel)
                if seed == nil {   // the mean alone
                    try model.growVocabulary(to: 325, rows: [:], seed: nil)
                }
                for (part, w) in [("embed", model.baseEmbedding), ("head", model.baseHead)] {
                    let mean = try g.floats("\(part).mean"), variance = try g.floats("\(part).var")
                    let theirs = try g.floats("\(part).new"), c = mean.count
                    let all = w.floatValues().array, new = Array(all[(320 * c)...])
                    if seed == nil {
                        // The mean itself: within float rounding of transformers'.
                        let rows = Array(new[(3 * c)...])
                        XCTAssertLessThanOrEqual(maxAbsDiff(rows, Array(repeating: 0, count: 2).flatMap { _ in mean }), 1e-6, "\(family) \(part)")
                        continue
                    }
                    for (who, rows) in [("finch", new), ("transformers", theirs)] {
                        var worst = 0.0
                        for (i, x) in rows.enumerated() {
                            let j = i % c
                            worst = max(worst, Double(abs(x - mean[j])) / (1e-9 * Double(variance[j])).squareRoot())
                        }
                        print("[added tokens] \(family) \(part) \(who): new rows within \(worst) σ of the mean")
                        XCTAssertLessThanOrEqual(worst, 6, "\(family) \(part) \(who)")
                        XCTAssertGreaterThan(worst, 0.05, "\(family) \(part) \(who): no draw at all")
                    }
                }
                if family == "qwen2" { XCTAssertTrue(model.baseHead === model.baseEmbedding) }
                if family == "llama" { XCTAssertFalse(model.baseHead === model.baseEmbedding) }
            }
        }
    }

    /// The draw's covariance is 10⁻⁹·Σ: the sample covariance of 4000 drawn rows against Σ computed here in float64
    /// (the diagonal within 10%, correlations within 0.1; a draw without the Cholesky factor fails both).
    func testDrawnRowsHaveTheScaledCovariance() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        let w = try XCTUnwrap(lm.model as? DecoderModel).baseEmbedding
        let v = w.outFeatures, c = w.inFeatures, k = 4000
        var random: SeededRandom? = SeededRandom(seed: 3)
        let rows = try MeanResizing.rows(for: w, adding: k, random: &random).array.map(Double.init)
        let old = w.floatValues().array.map(Double.init)
        func covariance(_ x: [Double], _ n: Int) -> [Double] {
            var mean = [Double](repeating: 0, count: c)
            for r in 0..<n { for j in 0..<c { mean[j] += x[r * c + j] / Double(n) } }
            var s = [Double](repeating: 0, count: c * c)
            for r in 0..<n { for i in 0..<c { for j in 0..<c { s[i * c + j] += (x[r * c + i] - mean[i]) * (x[r * c + j] - mean[j]) / Double(n) } } }
            return s
        }
        let sigma = covariance(old, v).map { $0 * MeanResizing.epsilon }, sample = covariance(rows, k)
        var diagonal = 0.0, correlation = 0.0
        for i in 0..<c {
            diagonal = max(diagonal, abs(sample[i * c + i] / sigma[i * c + i] - 1))
            for j in 0..<c where j != i {
                let rs = sample[i * c + j] / (sample[i * c + i] * sample[j * c + j]).squareRoot()
                let rt = sigma[i * c + j] / (sigma[i * c + i] * sigma[j * c + j]).squareRoot()
                correlation = max(correlation, abs(rs - rt))
            }
        }
        print("[added tokens] sample covariance of 4000 rows: diagonal off by \(diagonal), correlations by \(correlation)")
        XCTAssertLessThanOrEqual(diagonal, 0.1)
        XCTAssertLessThanOrEqual(correlation, 0.1)
    }

    /// PEFT's adapters of a grown vocabulary load with the tokenizer saved beside them, grow the model (the new rows
    /// theirs) and give PEFT's logits.
    func testLoadsPEFTsAdaptersWithTheirTokensAndLogits() throws {
        var worst = 0.0
        for family in Self.families { for mode in Self.modes {
            let dir = try Fixtures.required("added-tokens/\(family)/\(mode)")
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            XCTAssertEqual(lm.tokenizer.vocabSize, 320)
            try lm.loadAdapter(directory: dir)
            XCTAssertEqual(lm.tokenizer.vocabSize, 323, "\(family) \(mode)")
            XCTAssertEqual(lm.model.vocabSize, 323, "\(family) \(mode)")
            XCTAssertEqual(lm.tokenizer.encode("<|user|>zq", addSpecialTokens: false), [320, 322])
            let ref = try SafeTensorsFile(path: dir + "/logits.safetensors")
            let ids = [1, 5, 320, 9, 321, 7, 322, 11]   // the script's `ids`
            let logits = try lm.causal.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }
            let e = maxRelativeError(logits, try ref.floats("logits"))
            print("[added tokens] PEFT's \(family) \(mode) adapter: logits \(e)")
            worst = max(worst, e)
        } }
        // Measured 6.6e-7 (qwen2 lora); held to ~3×.
        XCTAssertLessThanOrEqual(worst, 2e-6)
    }

    /// What Finch saves for a grown vocabulary is what PEFT saves (the same tensor names and shapes, in each mode), and it
    /// loads back into a fresh model with the same logits.
    func testSavesTheGrownEmbeddingAsPEFTSavesIt() throws {
        for family in Self.families { for mode in Self.modes {
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            try lm.addTokens(special: Self.special, plain: Self.plain, seed: 1)
            var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj", "v_proj"]))
            if mode == "modules-to-save" { config.modulesToSave = ["embed_tokens", "lm_head"] }
            if mode == "trainable-tokens" { config.trainableTokenIndices = [320, 321, 322] }
            try lm.model.createAdapter(config: config, name: "default", seed: 2)
            // Move every trained value so that the copies and rows differ from the base.
            var random = SeededRandom(seed: 9)
            for p in lm.model.trainableParameters() { for i in 0..<p.value.count { p.value[i] += 0.01 * random.nextGaussian() } }
            lm.model.adapterParametersChanged()
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("finch-added-\(family)-\(mode)-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            try lm.model.adapter(named: "default", config: config).save(to: out)
            try lm.tokenizer.writeTokenizerJSON(to: out)

            let mine = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
            let peft = try SafeTensorsFile(path: Fixtures.required("added-tokens/\(family)/\(mode)") + "/adapter_model.safetensors")
            XCTAssertEqual(mine.tensorNames.sorted(), peft.tensorNames.sorted(), "\(family) \(mode)")
            for n in peft.tensorNames { XCTAssertEqual(mine.info(n)?.shape, peft.info(n)?.shape, n) }

            let ids = [1, 5, 320, 9, 321, 7, 322, 11]
            let before = try lm.causal.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }
            let again = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
            try again.loadAdapter(directory: out)
            XCTAssertEqual(again.tokenizer.vocabSize, 323)
            let after = try again.causal.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }
            XCTAssertEqual(maxAbsDiff(before, after), 0, "\(family) \(mode)")
        } }
    }

    /// An adapter whose saved embedding differs from the model's in the old rows (another base) is refused, and one whose
    /// tokenizer has tokens its saved rows do not cover.
    func testRefusesAnAdapterOfAnotherBaseOrWithoutItsRows() throws {
        let dir = try Fixtures.required("added-tokens/llama/lora")
        let other = try LoadedModel.load(Fixtures.path("tiny-llama/hf"), dtype: .bf16)
        XCTAssertThrowsError(try other.loadAdapter(directory: dir)) { e in
            XCTAssertTrue("\(e)".contains("another copy of the base"), "\(e)")
        }
        // Only the tokenizer: its tokens have no rows.
        let bare = FileManager.default.temporaryDirectory.appendingPathComponent("finch-added-bare-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: bare) }
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        try lm.model.createAdapter(config: AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj"])), name: "default", seed: 1)
        try lm.model.adapter(named: "default", config: AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj"]))).save(to: bare)
        let grown = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        try grown.addTokens(special: Self.special, plain: [], seed: 0)
        try grown.tokenizer.writeTokenizerJSON(to: bare)
        let fresh = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        XCTAssertThrowsError(try fresh.loadAdapter(directory: bare)) { e in
            XCTAssertTrue("\(e)".contains("save_embedding_layers"), "\(e)")
        }
        XCTAssertEqual(fresh.model.vocabSize, 320)
    }

    /// A refused adapter leaves the model as it was (its vocabulary not grown); an adapter saved with a tokenizer that
    /// only changed the EOS puts that tokenizer in use.
    func testARefusedAdapterLeavesTheModelAndAnEOSOnlyTokenizerIsUsed() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("finch-added-refused-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.copyItem(atPath: Fixtures.required("added-tokens/llama/lora"), toPath: tmp)
        let config = tmp + "/adapter_config.json"
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "\"fan_in_fan_out\": false", with: "\"fan_in_fan_out\": true")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        XCTAssertThrowsError(try lm.loadAdapter(directory: tmp)) { XCTAssertTrue("\($0)".contains("fan_in_fan_out"), "\($0)") }
        XCTAssertEqual(lm.model.vocabSize, 320)
        XCTAssertEqual(lm.tokenizer.vocabSize, 320)
        XCTAssertTrue(lm.model.adapterNames.isEmpty)

        let eos = FileManager.default.temporaryDirectory.appendingPathComponent("finch-added-eos-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: eos) }
        let a = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(["q_proj"]))
        try lm.model.createAdapter(config: a, name: "default", seed: 1)
        try lm.model.adapter(named: "default", config: a).save(to: eos)
        try lm.tokenizer.withEOS("<|im_start|>").writeTokenizerJSON(to: eos)
        let other = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        XCTAssertNotEqual(other.tokenizer.eosToken, "<|im_start|>")
        try other.loadAdapter(directory: eos)
        XCTAssertEqual(other.tokenizer.eosToken, "<|im_start|>")
        XCTAssertEqual(other.model.vocabSize, 320)
    }

    /// A run with a chat template file whose markers the tokenizer lacks adds them as special tokens, grows the
    /// vocabulary, trains their rows (trainable tokens) and writes the tokenizer with the adapter; the adapter loads
    /// back into a fresh model with the run's logits.
    func testRunAddsTheChatTemplatesTokensAndSavesTheTokenizer() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("finch-added-run-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let template = tmp + "/template.jinja"
        // The role markers are built from the roles' names: found by rendering.
        try "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
            .write(toFile: template, atomically: true, encoding: .utf8)
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-llama/hf")
        c.data = Fixtures.path("data/chat.jsonl")
        c.chatTemplate = template
        c.addTokens = ["zq"]
        c.maxSteps = 2; c.batchSize = 2; c.loggingSteps = 0; c.loraDropout = 0
        c.eosToken = "<|end|>"
        c.trainableTokenIndices = [320, 321, 322, 323, 324]
        let run = try TrainingRun.prepare(config: c)
        XCTAssertEqual(run.addedTokens.map(\.token), ["<|end|>", "<|assistant|>", "<|system|>", "<|user|>", "zq"])
        XCTAssertEqual(run.addedTokens.map(\.id), [320, 321, 322, 323, 324])
        XCTAssertEqual(run.vocabularyBefore, 320)
        XCTAssertTrue(run.train.contains { $0.tokens.contains(323) }, "the data is read with the added tokens")
        XCTAssertEqual(run.tokenizer.eosTokenId, 320)
        let out = tmp + "/run"
        let trainer = try run.trainer(runDirectory: out)
        _ = try trainer.train()
        for f in ["adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
        }
        let ids = [1, 320, 7, 323, 321, 9, 324]
        let want = try run.model.causal.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }
        let again = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        try again.loadAdapter(directory: out)
        XCTAssertEqual(again.tokenizer.encode("<|assistant|>zq", addSpecialTokens: false), [321, 324])
        XCTAssertEqual(again.tokenizer.eosTokenId, 320, "the run's EOS is saved with its tokenizer")
        XCTAssertNotNil(again.tokenizer.chatTemplate)
        XCTAssertEqual(maxAbsDiff(want, try again.causal.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }), 0)

        // Without the markers: nothing added.
        c.addChatTemplateTokens = false; c.addTokens = []; c.trainableTokenIndices = nil; c.eosToken = nil
        let plain = try TrainingRun.prepare(config: c)
        XCTAssertTrue(plain.addedTokens.isEmpty)
        XCTAssertEqual(plain.model.model.vocabSize, 320)
    }
}
