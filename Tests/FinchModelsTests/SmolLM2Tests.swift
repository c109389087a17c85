import FinchCore
import FinchFormats
@testable import FinchModels
import Foundation
import FinchTestSupport
import XCTest

/// The real SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32) against transformers'
/// logits and greedy continuations in ../shared/reference/logits_golden.*.
final class SmolLM2Tests: XCTestCase {
    struct Golden: Decodable {
        let text: String
        let ids: [Int]
        let last_top20_ids: [Int]
        let greedy32_ids: [Int]
        let greedy32_text: String
        let logits_positions: [Int]
    }

    nonisolated(unsafe) static var cached: [WeightDType: LanguageModel] = [:]

    static func model(_ dtype: WeightDType = .f32) throws -> LanguageModel {
        if let m = cached[dtype] { return m }
        let m = try LanguageModel.load(try Fixtures.smolLM2(), dtype: dtype)
        cached[dtype] = m
        return m
    }

    static func golden() throws -> [String: Golden] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.reference + "/logits_golden.json"))
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

    func testLogitsMatchTransformers() throws {
        let lm = try Self.model()
        let ref = try SafeTensorsFile(path: Fixtures.reference + "/logits_golden.safetensors")
        let v = lm.model.vocabSize
        for (name, g) in try Self.golden().sorted(by: { $0.key < $1.key }) {
            let out = try lm.model.forward([SequenceInput(tokens: g.ids, cache: lm.model.makeCache())], logits: .all)
            let expected = try ref.floats("\(name).logits")
            XCTAssertEqual(expected.count, g.logits_positions.count * v)
            var worst: Float = 0
            for (i, p) in g.logits_positions.enumerated() {
                let d = maxAbsDiff(Array(out.row(p)), expected[(i * v)..<((i + 1) * v)])
                worst = max(worst, d)
            }
            XCTAssertLessThanOrEqual(worst, 2e-3, "\(name): max |diff| \(worst)")
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
        let out = try lm.model.forward([SequenceInput(tokens: g.ids, cache: lm.model.makeCache())], logits: .last)
        XCTAssertEqual(Sampler.argmax(Array(out.row(0))), g.greedy32_ids[0])
        let ref = try SafeTensorsFile(path: Fixtures.reference + "/logits_golden.safetensors").floats("plain.logits")
        let v = lm.model.vocabSize
        let d = maxAbsDiff(Array(out.row(0)), ref[((g.ids.count - 1) * v)...])
        print("[plain, bf16 weights] max |logit diff| vs transformers f32: \(d)")
        XCTAssertLessThan(d, 0.5)
    }

    /// transformers' own f32 safetensors copy of the model (made by ../shared/reference/scripts/goldens.py,
    /// e.g. through Scripts/bench/bench_generate_vs_transformers.sh): an HF directory gives the same logits.
    func testHFDirectoryFromTransformersMatches() throws {
        let env = ProcessInfo.processInfo.environment
        let dir = env["FINCH_SMOLLM2_HF_DIR"] ?? NSHomeDirectory() + "/.cache/finch/bench-ref/models/smollm2-f32"
        guard FileManager.default.fileExists(atPath: dir + "/model.safetensors") else {
            throw XCTSkip("no f32 HF copy of SmolLM2 at \(dir) (set FINCH_SMOLLM2_HF_DIR)")
        }
        let lm = try LanguageModel.load(dir)
        let g = try Self.golden()["chat"]!
        XCTAssertEqual(lm.tokenizer.encode(g.text), g.ids)
        let out = try lm.model.forward([SequenceInput(tokens: g.ids, cache: lm.model.makeCache())], logits: .all)
        let ref = try SafeTensorsFile(path: Fixtures.reference + "/logits_golden.safetensors").floats("chat.logits")
        XCTAssertLessThanOrEqual(maxAbsDiff(out.values.array, ref), 2e-3)
    }
}
