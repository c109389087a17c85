import Foundation
import XCTest
@testable import FinchTokenizer

/// Small tokenizer.json fixtures of several shapes, checked against HF `tokenizers` (no model needed).
final class TinyTokenizerTests: XCTestCase {
    private func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let tok = try TokFixtures.tiny(name)
        let all = try TokFixtures.json("tiny_cases.json") as! [String: [[String: Any]]]
        let cases = try XCTUnwrap(all[name])
        for c in cases {
            let text = c["text"] as! String
            XCTAssertEqual(tok.encode(text), c["ids"] as! [Int], "\(name): ids of \(text.debugDescription)", file: file, line: line)
            XCTAssertEqual(tok.encode(text, addSpecialTokens: true), c["ids_special"] as! [Int],
                           "\(name): ids with special tokens of \(text.debugDescription)", file: file, line: line)
            let ids = c["ids"] as! [Int]
            XCTAssertEqual(tok.decode(ids), c["decoded"] as! String, "\(name): decode of \(text.debugDescription)", file: file, line: line)
            XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), c["decoded_skip_special"] as! String,
                           "\(name): decode(skip) of \(text.debugDescription)", file: file, line: line)
        }
    }

    func testByteLevelWithAddedTokens() throws { try check("bytelevel") }
    func testLlama3StyleSplitNFCIgnoreMerges() throws { try check("llama3") }
    func testCustomRegexWithNSRegularExpression() throws { try check("customregex") }
    func testSentencePieceStyleByteFallback() throws { try check("spm") }
    func testMetaspace() throws { try check("metaspace") }

    func testConfigSettings() throws {
        let tok = try TokFixtures.tiny("bytelevel")
        XCTAssertEqual(tok.bosToken, "<s>")
        XCTAssertEqual(tok.eosToken, "</s>")
        XCTAssertNotNil(tok.bosTokenId)
        XCTAssertTrue(tok.addsBOS)
        XCTAssertNotNil(tok.chatTemplate)
        // With a tokenizer.json, the config's add_bos_token is ignored (as in transformers 5): the
        // post-processor decides.
        let llama = try TokFixtures.tiny("llama3")
        XCTAssertFalse(llama.addsBOS)
        XCTAssertEqual(llama.encode("hi", addSpecialTokens: true), llama.encode("hi"))
    }

    func testErrorsNameTheProblem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func load(_ json: String) throws -> Tokenizer {
            let p = dir.appendingPathComponent("tokenizer.json").path
            try json.write(toFile: p, atomically: true, encoding: .utf8)
            return try Tokenizer(tokenizerJSONAt: p)
        }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSONAt: dir.appendingPathComponent("missing.json").path)) {
            guard case TokenizerError.io = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try load("{\"model\": {")) {
            guard case TokenizerError.invalidJSON = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try load(#"{"model": {"type": "Unigram", "vocab": []}}"#)) {
            guard case TokenizerError.unsupported(let model, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(model, "Unigram")
        }
        XCTAssertThrowsError(try load(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#)) {
            guard case TokenizerError.invalidMerge(let index, _, let reason) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(index, 0)
            XCTAssertTrue(reason.contains("\"b\""), reason)
        }
        XCTAssertThrowsError(try load(#"{"pre_tokenizer": {"type": "BertPreTokenizer"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}"#)) {
            guard case TokenizerError.unsupportedComponent(let kind, let type, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(kind, "pre-tokenizer")
            XCTAssertEqual(type, "BertPreTokenizer")
        }
    }
}
