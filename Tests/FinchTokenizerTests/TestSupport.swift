import Foundation
import XCTest
import FinchFormats
import FinchTestSupport
@testable import FinchTokenizer

/// Paths and loaders shared by the tokenizer tests.
enum TokFixtures {
    /// Tests/Fixtures/tokenizer
    static let dir: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("tokenizer")

    static func url(_ name: String) -> URL { dir.appendingPathComponent(name) }

    static func json(_ name: String) throws -> Any {
        let data = try Data(contentsOf: url(name))
        return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    }

    /// The tokenizer fixture in tiny/<name>.
    static func tiny(_ name: String) throws -> Tokenizer {
        let d = url("tiny").appendingPathComponent(name)
        let config = d.appendingPathComponent("tokenizer_config.json").path
        return try Tokenizer(tokenizerJSONAt: d.appendingPathComponent("tokenizer.json").path,
                             configAt: FileManager.default.fileExists(atPath: config) ? config : nil)
    }

    /// The real SmolLM2 GGUF, where ModelStore looks (skipped with the reason outside CI, a failure under CI).
    static func modelPath() throws -> String { try FinchTestSupport.Fixtures.smolLM2() }

    /// A file of transformers' SmolLM2 goldens, Tests/Fixtures/smollm2 (made by
    /// Scripts/fixtures/make_smollm2_goldens.py); committed, so a missing one is a failure.
    static func smolLM2Golden(_ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: try FinchTestSupport.Fixtures.required("smollm2/" + name)))
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: Tokenizer?

    /// The SmolLM2 tokenizer built from the GGUF (loaded once per test run).
    static func smolLM2() throws -> Tokenizer {
        let path = try modelPath()
        lock.lock(); defer { lock.unlock() }
        if let t = cached { return t }
        let t = try Tokenizer(gguf: GGUFFile(path: path))
        cached = t
        return t
    }

    struct Case {
        let text: String
        let ids: [Int]
        let decoded: String
        let decodedSkipSpecial: String
    }

    static func corpus() throws -> [Case] {
        let items = try json("corpus.json") as! [[String: Any]]
        return items.map {
            Case(text: $0["text"] as! String, ids: $0["ids"] as! [Int], decoded: $0["decoded"] as! String,
                 decodedSkipSpecial: $0["decoded_skip_special"] as! String)
        }
    }
}
