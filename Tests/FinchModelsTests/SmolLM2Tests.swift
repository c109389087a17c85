import FinchCore
import FinchFormats
import FinchTokenizer
@testable import FinchModels
import Foundation
import FinchTestSupport
import XCTest

/// The real SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32) against transformers'
/// logits and greedy continuations in Tests/Fixtures/smollm2/logits_golden.* and the files
/// transformers writes for it in Tests/Fixtures/smollm2/hf (both made by
/// Scripts/fixtures/make_smollm2_goldens.py).
final class SmolLM2Tests: XCTestCase {
    struct Golden: Decodable {
        let text: String
        let ids: [Int]
        let last_top20_ids: [Int]
        let greedy32_ids: [Int]
        let greedy32_text: String
        let logits_positions: [Int]
    }

    nonisolated(unsafe) static var cached: [WeightDType: LoadedModel] = [:]

    static func model(_ dtype: WeightDType = .f32) throws -> LoadedModel {
        if let m = cached[dtype] { return m }
        let m = try LoadedModel.load(try Fixtures.smolLM2(), dtype: dtype)
        cached[dtype] = m
        return m
    }

    /// A file of Tests/Fixtures/smollm2.
    static func reference(_ rel: String) throws -> String { try Fixtures.required("smollm2/" + rel) }

    static func golden() throws -> [String: Golden] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try reference("logits_golden.json")))
        return try JSONDecoder().decode([String: Golden].self, from: data)
    }

    func testConfigFromGGUF() throws {
        let c = try XCTUnwrap((try Self.model().model as? DecoderModel)?.config as? LlamaConfig)
        XCTAssertEqual(c.numHiddenLayers, 30)
        XCTAssertEqual(c.hiddenSize, 576)
        XCTAssertEqual(c.numAttentionHeads, 9)
        XCTAssertEqual(c.numKeyValueHeads, 3)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.ropeTheta, 100_000)
        XCTAssertTrue(c.tieWordEmbeddings)
    }

    /// Every stored position's logits within 4e-4 of transformers' (measured on an AVX-512 host, 2
    /// threads: 1.3e-4 chat, 6.5e-5 paragraph, 6.0e-5 plain; the tolerance is ~3× the worst).
    static let logitTolerance: Float = 4e-4

    func testLogitsMatchTransformers() throws {
        let lm = try Self.model()
        let ref = try SafeTensorsFile(path: try Self.reference("logits_golden.safetensors"))
        let v = lm.model.vocabSize
        for (name, g) in try Self.golden().sorted(by: { $0.key < $1.key }) {
            let out = try lm.causal.forward([SequenceInput(tokens: g.ids, cache: lm.causal.makeCache())], logits: .all)
            let expected = try ref.floats("\(name).logits")
            XCTAssertEqual(expected.count, g.logits_positions.count * v)
            var worst: Float = 0
            for (i, p) in g.logits_positions.enumerated() {
                let d = maxAbsDiff(Array(out.row(p)), expected[(i * v)..<((i + 1) * v)])
                worst = max(worst, d)
            }
            XCTAssertLessThanOrEqual(worst, Self.logitTolerance, "\(name): max |diff| \(worst)")
            print("[\(name)] max |logit diff| vs transformers: \(worst)")
            let last = Array(out.row(g.ids.count - 1))
            let top = Sampler.topIndices(last, 20)
            XCTAssertEqual(top, g.last_top20_ids, "\(name) top-20")
        }
    }

    func testGreedyContinuationsMatchTransformers() throws {
        let lm = try Self.model()
        let golden = try Self.golden()
        let names = golden.keys.sorted()
        // All three prompts as one batch: batching must not change greedy results.
        let results = try Generator(lm).generate(promptTokens: names.map { golden[$0]!.ids },
                                                 options: GenerationOptions(maxNewTokens: 32))
        for (name, r) in zip(names, results) {
            XCTAssertEqual(r.tokens, golden[name]!.greedy32_ids, name)
            XCTAssertEqual(r.text, golden[name]!.greedy32_text.replacingOccurrences(of: "<|im_end|>", with: ""), name)
        }
    }

    func testPromptTokenizationMatchesTransformers() throws {
        let lm = try Self.model()
        for (name, g) in try Self.golden() {
            XCTAssertEqual(lm.tokenizer.encode(g.text, addSpecialTokens: false), g.ids, name)
        }
    }

    func testBF16GreedyAgreesOnPlainPrompt() throws {
        let lm = try Self.model(.bf16)
        let g = try Self.golden()["plain"]!
        let out = try lm.causal.forward([SequenceInput(tokens: g.ids, cache: lm.causal.makeCache())], logits: .last)
        XCTAssertEqual(Sampler.argmax(Array(out.row(0))), g.greedy32_ids[0])
        let ref = try SafeTensorsFile(path: try Self.reference("logits_golden.safetensors")).floats("plain.logits")
        let v = lm.model.vocabSize
        let d = maxAbsDiff(Array(out.row(0)), ref[((g.ids.count - 1) * v)...])
        print("[plain, bf16 weights] max |logit diff| vs transformers f32: \(d)")
        XCTAssertLessThan(d, 0.5)
    }

    /// (a) Finch reads the files transformers writes for this model (Tests/Fixtures/smollm2/hf):
    /// config.json gives the GGUF's configuration, and the tokenizer files (tokenizer.json,
    /// tokenizer_config.json, chat_template.jinja) give transformers' ids for the chat prompt.
    func testReadsTransformersConfigAndTokenizerFiles() throws {
        let gguf = try XCTUnwrap((try Self.model().model as? DecoderModel)?.config as? LlamaConfig)
        let hf = try LlamaConfig.load(configJSON: try Self.reference("hf/config.json"))
        XCTAssertEqual(hf, gguf)
        let tok = try Tokenizer(huggingFaceDirectory: try Self.reference("hf"))
        let g = try Self.golden()["chat"]!
        XCTAssertEqual(try tok.applyChatTemplate([.user("What is LoRA in one sentence?")], addGenerationPrompt: true), g.text)
        XCTAssertEqual(try tok.encodeChat([.user("What is LoRA in one sentence?")], addGenerationPrompt: true), g.ids)
        for (name, p) in try Self.golden() { XCTAssertEqual(tok.encode(p.text), p.ids, name) }
    }

    /// sum(bits[i] * (i * 2654435761 + 1)) mod 2^64, as Scripts/fixtures/make_smollm2_goldens.py computes it.
    static func digest(_ x: [Float]) -> UInt64 {
        var s: UInt64 = 0
        for i in 0..<x.count { s = s &+ UInt64(x[i].bitPattern) &* (UInt64(i) &* 2_654_435_761 &+ 1) }
        return s
    }

    /// (b) Every weight Finch loads from the GGUF equals transformers' tensor of the same name bit for
    /// bit (digests of all 272 tensors, in Hugging Face names and layout), and layer 0's attention
    /// projections and norms value by value: q_proj / k_proj un-permuted from GGUF's row order exactly
    /// as transformers un-permutes them.
    func testGGUFWeightsEqualTransformersTensors() throws {
        let model = try XCTUnwrap(try Self.model().model as? DecoderModel)
        struct Digests: Decodable { struct T: Decodable { let name: String; let shape: [Int]; let digest: String }; let tensors: [T] }
        let ref = try JSONDecoder().decode(Digests.self, from: Data(contentsOf: URL(fileURLWithPath: try Self.reference("hf/tensor_digests.json"))))
        let plan = try model.exportPlan(keepQuantized: false, path: "")
        XCTAssertEqual(plan.map(\.name).sorted(), ref.tensors.map(\.name).sorted())
        let byName = Dictionary(uniqueKeysWithValues: plan.map { ($0.name, $0) })
        let layer0 = try SafeTensorsFile(path: try Self.reference("hf/layer0.safetensors"))
        var checked = 0
        for t in ref.tensors {
            guard let mine = byName[t.name] else { XCTFail("Finch has no tensor \(t.name)"); continue }
            XCTAssertEqual(mine.shape, t.shape, t.name)
            let values = mine.values().array
            XCTAssertEqual(String(Self.digest(values)), t.digest, "\(t.name) differs from transformers' tensor")
            if layer0.contains(t.name) {
                let theirs = try layer0.floats(t.name)
                XCTAssertTrue(values == theirs, "\(t.name): max |diff| \(maxAbsDiff(values, theirs))")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 7, "layer 0's q/k/v/o, both norms and the final norm compared value by value")
    }

    /// (c) A Hugging Face directory made of transformers' files (config, generation config, tokenizer)
    /// and the weights checked equal to transformers' above gives transformers' logits for the chat
    /// prompt: Finch's Hugging Face loading path end to end, on the real model.
    func testHFDirectoryFromTransformersMatches() throws {
        let model = try XCTUnwrap(try Self.model().model as? DecoderModel)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smollm2-hf-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            try FileManager.default.copyItem(atPath: try Self.reference("hf/" + f), toPath: dir + "/" + f)
        }
        let entries = try model.exportPlan(keepQuantized: false, path: dir).map {
            SafeTensorsWriter.Entry.float32(name: $0.name, shape: $0.shape, values: $0.values().array)
        }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: dir + "/model.safetensors")
        let lm = try LoadedModel.load(dir)
        let g = try Self.golden()["chat"]!
        XCTAssertEqual(try lm.tokenizer.encodeChat([.user("What is LoRA in one sentence?")], addGenerationPrompt: true), g.ids)
        let out = try lm.causal.forward([SequenceInput(tokens: g.ids, cache: lm.causal.makeCache())], logits: .all)
        let ref = try SafeTensorsFile(path: try Self.reference("logits_golden.safetensors")).floats("chat.logits")
        let d = maxAbsDiff(out.values.array, ref)
        print("[chat, HF directory] max |logit diff| vs transformers: \(d)")
        XCTAssertLessThanOrEqual(d, Self.logitTolerance)
    }
}
