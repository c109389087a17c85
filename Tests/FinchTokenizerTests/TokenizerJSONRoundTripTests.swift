import Foundation
import XCTest
@testable import FinchTokenizer

/// `writeTokenizerJSON` writes what was loaded; loading the written files gives the same tokenizer.
/// (Scripts/checks/tokenizer/check_written_tokenizer.py checks the same files with HF tokenizers/transformers.)
final class TokenizerJSONRoundTripTests: XCTestCase {
    private func roundTrip(_ tok: Tokenizer, texts: [String]) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-tok-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try tok.writeTokenizerJSON(to: dir.path)
        let back = try Tokenizer(tokenizerJSONAt: dir.appendingPathComponent("tokenizer.json").path,
                                 configAt: dir.appendingPathComponent("tokenizer_config.json").path)
        XCTAssertEqual(back.vocabSize, tok.vocabSize)
        XCTAssertEqual(back.bosTokenId, tok.bosTokenId)
        XCTAssertEqual(back.eosTokenId, tok.eosTokenId)
        XCTAssertEqual(back.padTokenId, tok.padTokenId)
        XCTAssertEqual(back.chatTemplate, tok.chatTemplate)
        XCTAssertEqual(back.addsBOS, tok.addsBOS)
        XCTAssertEqual(back.addedTokens, tok.addedTokens)
        for t in texts {
            XCTAssertEqual(back.encode(t), tok.encode(t), t.debugDescription)
            XCTAssertEqual(back.encode(t, addSpecialTokens: true), tok.encode(t, addSpecialTokens: true))
            let ids = tok.encode(t)
            XCTAssertEqual(back.decode(ids), tok.decode(ids))
        }
    }

    func testSmolLM2RoundTrip() throws {
        let tok = try TokFixtures.smolLM2()
        try roundTrip(tok, texts: try TokFixtures.corpus().map(\.text))
    }

    func testTinyRoundTrips() throws {
        let all = try TokFixtures.json("tiny_cases.json") as! [String: [[String: Any]]]
        for (name, cases) in all {
            try roundTrip(try TokFixtures.tiny(name), texts: cases.map { $0["text"] as! String })
        }
    }

    /// Writes the SmolLM2 tokenizer and the tiny ones into `$FINCH_WRITE_TOKENIZER_DIR` (kept, for
    /// Scripts/checks/tokenizer/check_written_tokenizer.py to check with HF tokenizers), else into a
    /// temporary folder; either way every written tokenizer loads back to the same ids.
    func testWriteForPythonCheck() throws {
        let env = ProcessInfo.processInfo.environment["FINCH_WRITE_TOKENIZER_DIR"]
        let out = env ?? FileManager.default.temporaryDirectory.appendingPathComponent("finch-tok-\(UUID().uuidString)").path
        defer { if env == nil { try? FileManager.default.removeItem(atPath: out) } }
        let tokenizers = [("", try TokFixtures.smolLM2())]
            + (try ["bytelevel", "llama3", "customregex", "spm", "metaspace"].map { ("tiny-" + $0, try TokFixtures.tiny($0)) })
        let texts = ["Hello, world!", "  two  spaces\tand a tab\n", "naïve café 日本語 🙂", "<|im_start|>user\nhi<|im_end|>"]
        for (sub, tok) in tokenizers {
            let dir = sub.isEmpty ? out : (out as NSString).appendingPathComponent(sub)
            try tok.writeTokenizerJSON(to: dir)
            let back = try Tokenizer(tokenizerJSONAt: dir + "/tokenizer.json", configAt: dir + "/tokenizer_config.json")
            for t in texts { XCTAssertEqual(back.encode(t), tok.encode(t), "\(sub) \(t.debugDescription)") }
        }
    }
}
