import Foundation
import XCTest
import FinchFormats
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

    /// The real SmolLM2 GGUF: `$FINCH_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf` (or `$FINCH_MODEL_DIR`
    /// itself if it is the file), else `~/.cache/finch/models/...`. Skips the test when absent,
    /// unless `CI` is set (then the test fails).
    static func modelPath() throws -> String {
        let name = "SmolLM2-135M-Instruct.Q4_1.gguf"
        var candidates: [String] = []
        if let d = ProcessInfo.processInfo.environment["FINCH_MODEL_DIR"] {
            candidates.append(d.hasSuffix(".gguf") ? d : (d as NSString).appendingPathComponent(name))
        }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        candidates.append((home as NSString).appendingPathComponent(".cache/finch/models/" + name))
        for c in candidates where FileManager.default.fileExists(atPath: c) { return c }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("the model \(name) is required on CI but was not found in \(candidates)")
            throw XCTSkip("model missing")
        }
        throw XCTSkip("\(name) not found (set FINCH_MODEL_DIR)")
    }

    /// A file of the shared reference data (`$FINCH_REFERENCE_DIR`, else `<repo>/../shared/reference`).
    /// Skips the test when absent, unless `CI` is set.
    static func reference(_ name: String) throws -> Data {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = ProcessInfo.processInfo.environment["FINCH_REFERENCE_DIR"]
            ?? repo.deletingLastPathComponent().appendingPathComponent("shared/reference").path
        let path = (dir as NSString).appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("reference file \(path) is missing") }
            throw XCTSkip("reference file \(path) not found (set FINCH_REFERENCE_DIR)")
        }
        return data
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
