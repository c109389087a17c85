import FinchTokenizer
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// sourceMaxLen / targetMaxLen / maxSeqLen, dropped examples and option validation.
final class DataTruncationTests: XCTestCase {
    /// One input-output record with a known source and target.
    func record(_ source: String, _ target: String) throws -> String {
        try DataFixtures.temp("one.jsonl", #"{"input": "\#(source)", "output": "\#(target)"}"# + "\n")
    }

    let source = "The quick brown fox jumps over the lazy dog"
    let target = " and runs far away"

    func testSourceMaxLenKeepsTheStartOfTheSource() throws {
        let tok = try DataFixtures.tokenizer()
        let path = try record(source, target)
        let data = try TrainingData.loadDataset(path: path, options: DatasetOptions(sourceMaxLen: 5), tokenizer: tok)
        let e = data.examples[0]
        XCTAssertEqual(Array(e.tokens.prefix(5)), Array(tok.encode32(source).prefix(5)))
        XCTAssertEqual(e.labels.prefix(5).filter { $0 != -100 }.count, 0)
        XCTAssertEqual(e.trainedRuns(tok), [target + "<|im_end|>"])
        XCTAssertEqual(e.count, 5 + tok.encode32(target).count + 1)
        XCTAssertEqual(data.truncatedCount, 1)
    }

    func testTargetMaxLenCutsTheEOSFirst() throws {
        let tok = try DataFixtures.tokenizer()
        let path = try record(source, target)
        let t = tok.encode32(target)
        let e = try TrainingData.load(path: path, options: DatasetOptions(targetMaxLen: 3), tokenizer: tok)[0]
        XCTAssertEqual(e.labels.filter { $0 != -100 }, Array(t.prefix(3)))
        let full = try TrainingData.load(path: path, options: DatasetOptions(targetMaxLen: t.count + 1), tokenizer: tok)[0]
        XCTAssertEqual(full.trainedRuns(tok), [target + "<|im_end|>"])
    }

    func testMaxSeqLenCutsTheWholeKeepingTheStart() throws {
        let tok = try DataFixtures.tokenizer()
        let path = try record(source, target)
        let s = tok.encode32(source), t = tok.encode32(target)
        let data = try TrainingData.loadDataset(path: path, options: DatasetOptions(maxSeqLen: s.count + 2), tokenizer: tok)
        XCTAssertEqual(data.examples[0].tokens, s + t.prefix(2))
        XCTAssertEqual(data.examples[0].labels, Array(repeating: -100, count: s.count) + t.prefix(2))
        XCTAssertEqual(data.truncatedCount, 1)
    }

    func testExamplesWithNothingToTrainAreDroppedAndCounted() throws {
        let tok = try DataFixtures.tokenizer()
        let long = String(repeating: "word ", count: 40)
        let path = try DataFixtures.temp("mixed.jsonl", """
            {"input": "\(long)", "output": "lost"}
            {"input": "short", "output": " kept"}
            {"input": "\(long)", "output": "lost too"}
            """)
        let data = try TrainingData.loadDataset(path: path, options: DatasetOptions(maxSeqLen: 16), tokenizer: tok)
        XCTAssertEqual(data.recordCount, 3)
        XCTAssertEqual(data.droppedCount, 2)
        XCTAssertEqual(data.examples.count, 1)
        XCTAssertEqual(data.examples[0].trainedRuns(tok), [" kept<|im_end|>"])
        // With trainOnSource the long prompts are kept.
        let all = try TrainingData.loadDataset(path: path, options: DatasetOptions(maxSeqLen: 16, trainOnSource: true), tokenizer: tok)
        XCTAssertEqual(all.examples.count, 3)
        XCTAssertEqual(all.truncatedCount, 2)
    }

    func testEmptyTargetWithoutEOSIsDropped() throws {
        let tok = try DataFixtures.tokenizer()
        let path = try record("prompt only", "")
        XCTAssertEqual(try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: tok)[0].trainedRuns(tok), ["<|im_end|>"])
        let e = assertDataError(try TrainingData.load(path: path, options: DatasetOptions(addEOS: false), tokenizer: tok))
        XCTAssertEqual(e, .emptyDataset(path: path, dropped: 1))
        XCTAssertTrue(e?.description.contains("all 1 records were dropped") ?? false)
    }

    func testSourceMaxLenCountsTheBOS() throws {
        let tok = try DataFixtures.bosTokenizer()
        let path = try record(source, target)
        let e = try TrainingData.load(path: path, options: DatasetOptions(sourceMaxLen: 3), tokenizer: tok)[0]
        XCTAssertEqual(Array(e.tokens.prefix(3)), [0] + tok.encode32(source).prefix(2))
        XCTAssertEqual(e.trainedRuns(tok), [target + "<|im_end|>"])
    }

    func testInvalidOptions() throws {
        let tok = try DataFixtures.tokenizer()
        let path = try record(source, target)
        for options in [DatasetOptions(maxSeqLen: 1), DatasetOptions(sourceMaxLen: -1), DatasetOptions(targetMaxLen: 0)] {
            guard case .invalidOptions = assertDataError(try TrainingData.load(path: path, options: options, tokenizer: tok)) else {
                return XCTFail("expected invalidOptions")
            }
        }
        // A tokenizer without an EOS token cannot append one.
        let noEOS = try Tokenizer(tokenizerJSONAt: DataFixtures.path("tiny-llama/hf/tokenizer.json"))
        guard case .invalidOptions = assertDataError(try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: noEOS)) else {
            return XCTFail("expected invalidOptions")
        }
        XCTAssertEqual(try TrainingData.load(path: path, options: DatasetOptions(addEOS: false), tokenizer: noEOS).count, 1)
    }
}
