@testable import FinchTrain
import FinchTestSupport
import XCTest

/// Format detection from extensions and first-record keys.
final class DataDetectionTests: XCTestCase {
    func testFixturesAreDetected() throws {
        let expected: [(String, DatasetFormat)] = [
            ("alpaca.json", .alpaca), ("alpaca_no_input.jsonl", .alpaca), ("input_output.jsonl", .inputOutput),
            ("self_instruct.jsonl", .selfInstruct), ("oasst.jsonl", .oasst), ("chat.jsonl", .chat),
            ("text.jsonl", .text), ("plain.txt", .text),
        ]
        for (file, format) in expected {
            XCTAssertEqual(try TrainingData.detectFormat(path: DataFixtures.path("data/" + file)), format, file)
        }
    }

    /// Each format has one reader, for that format, and detection asks each reader once.
    func testEveryFormatHasItsReader() {
        for f in DatasetFormat.allCases {
            XCTAssertEqual(f.reader.format, f)
            XCTAssertEqual(f.requiredKeys, f.reader.requiredKeys)
        }
        XCTAssertEqual(Set(DatasetFormat.detectionOrder), Set(DatasetFormat.allCases))
        XCTAssertEqual(DatasetFormat.detectionOrder.count, DatasetFormat.allCases.count)
    }

    func testKeyRules() throws {
        let cases: [(String, DatasetFormat)] = [
            (#"{"messages": []}"#, .chat),
            (#"{"instruction": "x", "output": "y", "input": "z"}"#, .alpaca),
            (#"{"prompt": "x", "completion": "y", "input": "i", "output": "o"}"#, .selfInstruct),
            (#"{"prompt": "x", "input": "i", "output": "o"}"#, .inputOutput),
            ("{\"text\": \"### Assistant: hi\"}", .oasst),
            (#"{"text": "plain"}"#, .text),
        ]
        for (line, format) in cases {
            let path = try DataFixtures.temp("d.jsonl", "\n\n" + line + "\n")
            XCTAssertEqual(try TrainingData.detectFormat(path: path), format, line)
        }
    }

    func testJSONExtensionHoldingJSONLines() throws {
        let path = try DataFixtures.temp("lines.json", "{\"input\": \"a\", \"output\": \"b\"}\n{\"input\": \"c\", \"output\": \"d\"}\n")
        XCTAssertEqual(try TrainingData.detectFormat(path: path), .inputOutput)
        XCTAssertEqual(try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: try DataFixtures.tokenizer()).count, 2)
    }

    func testByteOrderMarkAndCRLF() throws {
        let path = try DataFixtures.temp("bom.jsonl", "\u{FEFF}{\"prompt\": \"a\", \"completion\": \"b\"}\r\n\r\n{\"prompt\": \"c\", \"completion\": \"d\"}\r\n")
        XCTAssertEqual(try TrainingData.detectFormat(path: path), .selfInstruct)
        let ex = try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: try DataFixtures.tokenizer())
        XCTAssertEqual(ex.count, 2)
    }

    func testUndetectableKeys() throws {
        let path = try DataFixtures.temp("odd.jsonl", "\n{\"question\": \"q\", \"answer\": \"a\"}\n")
        let e = assertDataError(try TrainingData.detectFormat(path: path))
        XCTAssertEqual(e, .undetectableFormat(path: path, line: 2, keys: ["question", "answer"]))
        XCTAssertTrue(e?.description.contains("\(path):2:") ?? false)
    }

    func testUnknownExtensionUnlessAFormatIsGiven() throws {
        let path = try DataFixtures.temp("data.csv", "{\"input\": \"a\", \"output\": \"b\"}\n")
        XCTAssertEqual(assertDataError(try TrainingData.detectFormat(path: path)), .unknownExtension(path: path, extension: "csv"))
        let tok = try DataFixtures.tokenizer()
        XCTAssertEqual(try TrainingData.load(path: path, options: DatasetOptions(format: .inputOutput), tokenizer: tok).count, 1)
        // Any extension is read as raw text for the text format.
        let md = try DataFixtures.temp("notes.md", "Some notes about finches.")
        let ex = try TrainingData.load(path: md, options: DatasetOptions(format: .text), tokenizer: tok)
        XCTAssertEqual(ex[0].decodedText(tok), "Some notes about finches.<|im_end|>")
    }

    func testMissingFile() {
        let path = "/nonexistent/finch/data.jsonl"
        XCTAssertEqual(assertDataError(try TrainingData.detectFormat(path: path)), .fileNotFound(path: path))
        XCTAssertEqual(assertDataError(try TrainingData.load(path: path, options: DatasetOptions(format: .alpaca),
                                                             tokenizer: try DataFixtures.tokenizer())),
                       .fileNotFound(path: path))
    }

    func testEmptyFile() throws {
        let path = try DataFixtures.temp("empty.jsonl", "\n\n")
        XCTAssertEqual(assertDataError(try TrainingData.detectFormat(path: path)), .emptyDataset(path: path, dropped: 0))
        XCTAssertEqual(assertDataError(try TrainingData.load(path: path, options: DatasetOptions(format: .alpaca),
                                                             tokenizer: try DataFixtures.tokenizer())),
                       .emptyDataset(path: path, dropped: 0))
    }

    func testFormatNamesAreQLoRAs() {
        XCTAssertEqual(DatasetFormat.allCases.map(\.rawValue), ["alpaca", "input-output", "oasst", "self-instruct", "chat", "text"])
        XCTAssertEqual(DatasetFormat(rawValue: "input-output"), .inputOutput)
    }
}
