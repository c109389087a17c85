import Foundation
import XCTest

/// Paths of committed fixtures, of ../shared/reference and of the real model, for every test target.
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    public static func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    /// ../shared/reference next to the repository.
    public static let reference = root.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/reference").path

    /// The real SmolLM2 GGUF; skips (or fails under CI) when it is absent.
    public static func smolLM2() throws -> String {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let d = env["FINCH_MODEL_DIR"] { candidates.append(d + "/SmolLM2-135M-Instruct.Q4_1.gguf") }
        let home = env["FINCH_HOME"] ?? (env["XDG_CACHE_HOME"].map { $0 + "/finch" } ?? NSHomeDirectory() + "/.cache/finch")
        candidates.append(home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        if let p = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return p }
        if env["CI"] != nil { XCTFail("SmolLM2 GGUF not found in \(candidates); CI must fetch it (Scripts/fetch-model.sh)") }
        throw XCTSkip("SmolLM2 GGUF not downloaded (run Scripts/fetch-model.sh)")
    }
}

/// max |a - b|
public func maxAbsDiff(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
