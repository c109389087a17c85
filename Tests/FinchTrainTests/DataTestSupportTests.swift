import FinchCore
import FinchTokenizer
@testable import FinchTrain
import Foundation
import FinchTestSupport
import XCTest

/// Fixtures and helpers shared by the Data*Tests files.
enum DataFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    /// tiny-llama's byte-level BPE (320 ids) with its ChatML template; no BOS, EOS `<|im_end|>` (2).
    static func tokenizer() throws -> Tokenizer { try chatTokenizer.get() }

    /// The same vocabulary with a post-processor that adds BOS `<|endoftext|>` (0), and no chat template.
    static func bosTokenizer() throws -> Tokenizer { try bosTokenizerResult.get() }

    private static let chatTokenizer = Result {
        try Tokenizer(tokenizerJSONAt: path("tiny-llama/hf/tokenizer.json"), configAt: path("tiny-llama/hf/tokenizer_config.json"))
    }
    private static let bosTokenizerResult = Result {
        try Tokenizer(tokenizerJSONAt: path("data/bos-tokenizer/tokenizer.json"), configAt: path("data/bos-tokenizer/tokenizer_config.json"))
    }

    /// Writes `contents` to a new file named `name` in a fresh temporary directory.
    static func temp(_ name: String, _ contents: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(contents.utf8).write(to: url)
        return url.path
    }
}

extension TrainingExample {
    /// The text of each maximal run of trained labels, in order.
    func trainedRuns(_ tokenizer: Tokenizer) -> [String] {
        var runs: [String] = []
        var current: [Int] = []
        for l in labels {
            if l == CrossEntropy.ignoreIndex {
                if !current.isEmpty { runs.append(tokenizer.decode(current)); current = [] }
            } else {
                current.append(Int(l))
            }
        }
        if !current.isEmpty { runs.append(tokenizer.decode(current)) }
        return runs
    }

    /// The text of the masked positions before the first trained one.
    func maskedPrefix(_ tokenizer: Tokenizer) -> String {
        let n = labels.firstIndex(where: { $0 != CrossEntropy.ignoreIndex }) ?? labels.count
        return tokenizer.decode(tokens[..<n].map(Int.init))
    }

    /// The text of all tokens.
    func decodedText(_ tokenizer: Tokenizer) -> String { tokenizer.decode(tokens.map(Int.init)) }

    /// Every label is either -100 or the token at its position.
    var labelsMatchTokens: Bool {
        zip(tokens, labels).allSatisfy { $1 == CrossEntropy.ignoreIndex || $0 == $1 }
    }
}

/// Asserts that `body` throws a `DataError` and returns it.
func assertDataError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> DataError? {
    do {
        _ = try body()
        XCTFail("expected a DataError", file: file, line: line)
    } catch let e as DataError {
        return e
    } catch {
        XCTFail("expected a DataError, got \(error)", file: file, line: line)
    }
    return nil
}

final class DataTestSupportTests: XCTestCase {
    func testTinyTokenizerRoundTripsAndHasNoBOS() throws {
        let tok = try DataFixtures.tokenizer()
        XCTAssertFalse(tok.addsBOS)
        XCTAssertEqual(tok.eosTokenId, 2)
        XCTAssertNotNil(tok.chatTemplate)
        let s = "Below is an instruction.\n\n### Response: Paris"
        XCTAssertEqual(tok.decode(tok.encode(s)), s)
        let bos = try DataFixtures.bosTokenizer()
        XCTAssertTrue(bos.addsBOS)
        XCTAssertEqual(bos.bosTokenId, 0)
        XCTAssertNil(bos.chatTemplate)
    }
}
