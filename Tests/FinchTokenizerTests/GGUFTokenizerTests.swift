import Foundation
import XCTest
import FinchFormats
@testable import FinchTokenizer

/// The real SmolLM2 tokenizer (from its GGUF) against ids made by transformers.
final class GGUFTokenizerTests: XCTestCase {
    func testGoldenIds() throws {
        let tok = try TokFixtures.smolLM2()
        let data = try TokFixtures.smolLM2Golden("tokenizer_golden.json")
        let cases = try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
        XCTAssertEqual(cases.count, 17)
        for c in cases {
            let text = c["text"] as! String
            XCTAssertEqual(tok.encode(text), c["ids"] as! [Int], "ids of \(text.debugDescription)")
        }
    }

    func testCorpusIdsAndDecoding() throws {
        let tok = try TokFixtures.smolLM2()
        let cases = try TokFixtures.corpus()
        XCTAssertGreaterThan(cases.count, 300)
        var failures = 0
        for c in cases {
            let got = tok.encode(c.text)
            if got != c.ids {
                failures += 1
                if failures <= 10 { XCTFail("ids of \(c.text.debugDescription):\n got \(got)\nwant \(c.ids)") }
            }
            XCTAssertEqual(tok.decode(c.ids), c.decoded, "decode of \(c.text.debugDescription)")
            XCTAssertEqual(tok.decode(c.ids, skipSpecialTokens: true), c.decodedSkipSpecial,
                           "decode(skipSpecialTokens) of \(c.text.debugDescription)")
            XCTAssertEqual(tok.decode(got), c.text, "decode(encode(s)) of \(c.text.debugDescription)")
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) corpus strings tokenized differently")
    }

    func testSpecialTokensAndMetadata() throws {
        let tok = try TokFixtures.smolLM2()
        XCTAssertEqual(tok.vocabSize, 49152)
        XCTAssertEqual(tok.bosTokenId, 1)
        XCTAssertEqual(tok.bosToken, "<|im_start|>")
        XCTAssertEqual(tok.eosTokenId, 2)
        XCTAssertEqual(tok.eosTokenIds, [2])
        XCTAssertEqual(tok.padTokenId, 2)
        XCTAssertEqual(tok.unknownTokenId, 0)
        XCTAssertFalse(tok.addsBOS)
        XCTAssertEqual(tok.id(for: "<|im_end|>"), 2)
        XCTAssertEqual(tok.token(for: 1), "<|im_start|>")
        XCTAssertEqual(tok.id(for: "Ġthe"), 260)
        XCTAssertTrue(tok.isSpecial(0))
        XCTAssertFalse(tok.isSpecial(260))
        XCTAssertTrue(tok.isByteLevel)
        XCTAssertEqual(tok.encode("hello", addSpecialTokens: true), tok.encode("hello"))  // no BOS for SmolLM2
        XCTAssertEqual(tok.decode([1, 4093, 198, 6004, 2], skipSpecialTokens: true), "user\nhi")
        XCTAssertEqual(tok.decode([999_999, -1, 28120]), "hello")  // unknown ids are skipped
    }

    func testChatTemplateFromGGUF() throws {
        let tok = try TokFixtures.smolLM2()
        let meta = try JSONSerialization.jsonObject(with: TokFixtures.smolLM2Golden("model_meta.json")) as! [String: Any]
        XCTAssertEqual(tok.chatTemplate, meta["chat_template"] as? String)
        let golden = try JSONSerialization.jsonObject(with: TokFixtures.smolLM2Golden("logits_golden.json")) as! [String: Any]
        let chat = golden["chat"] as! [String: Any]
        let text = try tok.applyChatTemplate([.user("What is LoRA in one sentence?")], addGenerationPrompt: true)
        XCTAssertEqual(text, chat["text"] as? String)
        XCTAssertEqual(try tok.encodeChat([.user("What is LoRA in one sentence?")], addGenerationPrompt: true), chat["ids"] as? [Int])
    }

    /// The word cache changes nothing: a fresh tokenizer (empty cache) and one that has already
    /// encoded the corpus give transformers' ids on every string, twice over. (Speed is measured
    /// by benchmarks, not here.)
    func testColdAndWarmCacheGiveTheSameIds() throws {
        let warm = try TokFixtures.smolLM2()
        let corpus = try TokFixtures.corpus()
        for c in corpus { _ = warm.encode32(c.text) }
        let cold = try Tokenizer(gguf: GGUFFile(path: try TokFixtures.modelPath()))
        var wrong = 0
        for c in corpus {
            let a = cold.encode(c.text), b = warm.encode(c.text)
            if a != c.ids || b != c.ids { wrong += 1 }
        }
        XCTAssertEqual(wrong, 0, "\(wrong) of \(corpus.count) strings differ between a cold and a warm word cache or from transformers")
    }

    func testSentencePieceGGUFIsRejectedClearly() throws {
        let data = GGUFTokenizerData(model: "llama", tokens: ["<unk>", "<s>", "</s>"])
        XCTAssertThrowsError(try Tokenizer(ggufTokenizer: data)) { error in
            guard case TokenizerError.unsupported(let model, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(model, "llama")
            XCTAssertTrue(reason.contains("SentencePiece"), reason)
        }
        XCTAssertThrowsError(try Tokenizer(ggufMetadata: [:])) { error in
            XCTAssertEqual(error as? TokenizerError, .missingField(field: "tokenizer.ggml.model", source: "GGUF metadata"))
        }
    }
}

extension GGUFTokenizerTests {
    /// One tokenizer shared by many threads gives the same ids as one thread (the word cache is locked).
    func testConcurrentEncoding() throws {
        let tok = try TokFixtures.smolLM2()
        let cases = try TokFixtures.corpus()
        final class Results: @unchecked Sendable {
            let ok: UnsafeMutableBufferPointer<Bool>
            init(_ n: Int) { ok = .allocate(capacity: n); ok.initialize(repeating: false) }
            deinit { ok.deallocate() }
        }
        let results = Results(cases.count)
        let texts = cases.map(\.text), ids = cases.map(\.ids)
        DispatchQueue.concurrentPerform(iterations: cases.count) { i in
            results.ok[i] = tok.encode(texts[i]) == ids[i]
        }
        XCTAssertTrue(results.ok.allSatisfy { $0 })
    }
}
