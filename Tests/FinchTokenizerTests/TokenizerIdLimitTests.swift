import FinchFormats
@testable import FinchTokenizer
import Foundation
import XCTest

/// Ids and counts a tokenizer.json gives are checked before Finch builds tables from them: the
/// fuzzer found a negative vocabulary id that crashed the BPE model's id table (regression input
/// Tests/Fixtures/fuzz-regressions/tokenizer-negative-vocab-id.json); a huge one would have made
/// that table as large as the id.
final class TokenizerIdLimitTests: XCTestCase {
    let base: [String: Any] = [
        "version": "1.0",
        "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2, "<s>": 3], "merges": ["a b"]] as [String: Any],
        "added_tokens": [["id": 3, "content": "<s>", "special": true]],
    ]

    func load(_ json: [String: Any], _ name: String) throws -> Tokenizer {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ids-\(name)-\(UUID()).json").path
        _ = FileManager.default.createFile(atPath: path, contents: try JSONSerialization.data(withJSONObject: json))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Tokenizer(tokenizerJSONAt: path)
    }

    func expectRefused(_ json: [String: Any], _ name: String, field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(json, name), name, file: file, line: line) { e in
            guard case TokenizerError.invalidField(let f, _, _) = e else { return XCTFail("\(name): \(e)", file: file, line: line) }
            XCTAssertEqual(f, field, name, file: file, line: line)
        }
    }

    func testBaselineLoads() throws {
        let t = try load(base, "base")
        XCTAssertEqual(t.encode("ab", addSpecialTokens: false), [2])
    }

    func testIdsOutOfRangeAreRefusedNamingTheField() {
        let model = base["model"] as! [String: Any]
        for (name, id) in [("negative", -165), ("int32-overflow", 1 << 40), ("huge", 1 << 24)] {
            var m = model
            m["vocab"] = ["a": 0, "b": id, "ab": 2, "<s>": 3]
            var j = base
            j["model"] = m
            expectRefused(j, "vocab-\(name)", field: "model.vocab[\"b\"]")
        }
        var j = base
        j["added_tokens"] = [["id": -1, "content": "<s>", "special": true]]
        expectRefused(j, "added", field: "added_tokens[0].id")
        j = base
        j["post_processor"] = ["type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                               "pair": [], "special_tokens": ["<s>": ["id": "<s>", "ids": [Int(Int32.max) + 1], "tokens": ["<s>"]]]]
        expectRefused(j, "post", field: "post_processor.special_tokens[\"<s>\"].ids[0]")
        j = base
        j["post_processor"] = ["type": "RobertaProcessing", "cls": ["<s>", -4], "sep": ["<s>", 3]]
        expectRefused(j, "cls", field: "post_processor.cls[1]")
        j = base
        j["decoder"] = ["type": "Strip", "content": " ", "start": -1, "stop": 0]
        expectRefused(j, "strip", field: "decoder.start")
    }

    func testFuzzerInputIsRefused() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fuzz-regressions/tokenizer-negative-vocab-id.json").path
        XCTAssertThrowsError(try Tokenizer(tokenizerJSONAt: path)) { e in
            XCTAssertTrue("\(e)".contains("outside 0..<16777216"), "\(e)")
        }
    }
}
