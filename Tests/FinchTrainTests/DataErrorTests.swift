@testable import FinchTrain
import FinchTestSupport
import XCTest

/// Malformed records are reported with the file, the 1-based line, and what is wrong.
final class DataErrorTests: XCTestCase {
    /// Loads `contents` (written to `name`) and returns the error's line and reason.
    func failure(_ name: String, _ contents: String, format: DatasetFormat? = nil,
                 file: StaticString = #filePath, line: UInt = #line) throws -> (path: String, line: Int, reason: String)? {
        let path = try DataFixtures.temp(name, contents)
        let e = assertDataError(try TrainingData.load(path: path, options: DatasetOptions(format: format),
                                                      tokenizer: try DataFixtures.tokenizer()), file: file, line: line)
        guard case let .malformed(p, l, reason) = e else {
            XCTFail("expected .malformed, got \(String(describing: e))", file: file, line: line)
            return nil
        }
        XCTAssertEqual(p, path, file: file, line: line)
        XCTAssertTrue(e!.description.hasPrefix("\(path):\(l): "), file: file, line: line)
        return (p, l, reason)
    }

    func testBadJSONOnALineAfterBlankLines() throws {
        let f = try XCTUnwrap(try failure("bad.jsonl", """
            {"input": "a", "output": "b"}

            {"input": "c", "output": }
            {"input": "d", "output": "e"}
            """))
        XCTAssertEqual(f.line, 3)
        XCTAssertTrue(f.reason.hasPrefix("invalid JSON at column 26:"), f.reason)
    }

    func testMissingKeyNamesTheKeyAndTheFormat() throws {
        let f = try XCTUnwrap(try failure("missing.jsonl", """
            {"input": "a", "output": "b"}
            {"input": "c", "answer": "d"}
            """, format: .inputOutput))
        XCTAssertEqual(f.line, 2)
        XCTAssertTrue(f.reason.contains(#"missing key "output""#), f.reason)
        XCTAssertTrue(f.reason.contains("input-output format"), f.reason)
        XCTAssertTrue(f.reason.contains("keys here: input, answer"), f.reason)
    }

    func testWrongTypeOnALaterLine() throws {
        let f = try XCTUnwrap(try failure("type.jsonl", """
            {"instruction": "a", "output": "b"}
            {"instruction": "a", "output": "b"}

            {"instruction": "a", "input": "x", "output": 5}
            """))
        XCTAssertEqual(f.line, 4)
        XCTAssertEqual(f.reason, #"key "output" is a number; the alpaca format needs a string"#)
    }

    func testOptionalInputOfTheWrongType() throws {
        let f = try XCTUnwrap(try failure("input.jsonl", #"{"instruction": "a", "input": ["x"], "output": "b"}"#))
        XCTAssertEqual(f.line, 1)
        XCTAssertTrue(f.reason.contains(#"key "input" is an array"#), f.reason)
    }

    func testNonObjectLine() throws {
        let f = try XCTUnwrap(try failure("list.jsonl", """
            {"prompt": "a", "completion": "b"}
            ["prompt", "completion"]
            """))
        XCTAssertEqual(f.line, 2)
        XCTAssertEqual(f.reason, "expected a JSON object, found an array")
    }

    func testJSONArrayRecordIsNamedByIndexAndLine() throws {
        let f = try XCTUnwrap(try failure("array.json", """
            [
              {"instruction": "first", "output": "1"},
              {
                "instruction": "second",
                "output": "2"
              },
              {
                "instruction": "third",
                "response": "3"
              }
            ]
            """))
        XCTAssertEqual(f.line, 7)
        XCTAssertTrue(f.reason.hasPrefix("record 2 of the JSON array: missing key \"output\""), f.reason)
    }

    func testJSONArraySyntaxErrorLine() throws {
        let f = try XCTUnwrap(try failure("syntax.json", """
            [
              {"input": "a", "output": "b"},
              {"input": "c", "output": "d"}
              {"input": "e", "output": "f"}
            ]
            """))
        XCTAssertEqual(f.line, 4)
        XCTAssertTrue(f.reason.contains("expected ',' or ']'"), f.reason)
    }

    func testJSONArrayOfStrings() throws {
        let f = try XCTUnwrap(try failure("strings.json", "[\n\"a\",\n\"b\"]", format: .text))
        XCTAssertEqual(f.line, 2)
        XCTAssertEqual(f.reason, "record 0 of the JSON array: expected a JSON object, found a string")
    }

    func testTopLevelObjectInAJSONFileIsJSONLines() throws {
        // A pretty-printed single object is not JSON lines: the first line alone is incomplete.
        let f = try XCTUnwrap(try failure("object.json", "{\n  \"input\": \"a\",\n  \"output\": \"b\"\n}\n", format: .inputOutput))
        XCTAssertEqual(f.line, 1)
        XCTAssertTrue(f.reason.contains("JSON lines need one complete object per line"), f.reason)
    }

    func testChatMessageErrors() throws {
        let notArray = try XCTUnwrap(try failure("chat1.jsonl", """
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
            {"messages": "hello"}
            """))
        XCTAssertEqual(notArray.line, 2)
        XCTAssertTrue(notArray.reason.contains(#"key "messages" is a string"#), notArray.reason)

        let noRole = try XCTUnwrap(try failure("chat2.jsonl", """
            {"messages": [{"role": "user", "content": "hi"}]}
            {"messages": [{"role": "user", "content": "hi"}]}
            {"messages": [{"role": "user", "content": "hi"}, {"content": "yo"}]}
            """, format: .chat))
        XCTAssertEqual(noRole.line, 3)
        XCTAssertTrue(noRole.reason.contains(#"messages[1] has no "role""#), noRole.reason)

        let badRole = try XCTUnwrap(try failure("chat3.jsonl", #"{"messages": [{"role": 1, "content": "hi"}]}"#))
        XCTAssertTrue(badRole.reason.contains("messages[0].role is a number"), badRole.reason)
    }

    func testChatTemplateFailureNamesTheLine() throws {
        // tiny-llama's template concatenates content with strings: a list content fails there.
        let path = try DataFixtures.temp("chat4.jsonl", """
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "yo"}]}
            """)
        let e = assertDataError(try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: try DataFixtures.tokenizer()))
        guard case let .chatTemplate(p, line, _) = e else { return XCTFail("expected .chatTemplate, got \(String(describing: e))") }
        XCTAssertEqual(p, path)
        XCTAssertEqual(line, 2)
    }
}
