import Foundation
import XCTest
@testable import FinchTokenizer

/// `writeTokenizerJSON` writes what was loaded; loading the written files gives the same tokenizer.
/// (Scripts/tokenizer/check_written_tokenizer.py checks the same files with HF tokenizers/transformers.)
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

    /// Writes the SmolLM2 tokenizer to $FINCH_WRITE_TOKENIZER_DIR for checking with Python.
    func testWriteForPythonCheck() throws {
        guard let out = ProcessInfo.processInfo.environment["FINCH_WRITE_TOKENIZER_DIR"] else {
            throw XCTSkip("set FINCH_WRITE_TOKENIZER_DIR to write the SmolLM2 tokenizer for check_written_tokenizer.py")
        }
        try TokFixtures.smolLM2().writeTokenizerJSON(to: out)
        for name in ["bytelevel", "llama3", "customregex", "spm", "metaspace"] {
            try TokFixtures.tiny(name).writeTokenizerJSON(to: (out as NSString).appendingPathComponent("tiny-" + name))
        }
    }
}
