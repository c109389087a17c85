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
        try model("SmolLM2-135M-Instruct.Q4_1.gguf", fetch: "smollm2-135m")
    }

    /// The real Gemma 3 270M GGUF (Q4_K_M); skips (or fails under CI) when it is absent.
    public static func gemma3() throws -> String {
        try model("gemma-3-270m-q4_k_m.gguf", fetch: "gemma3-270m")
    }

    static func model(_ file: String, fetch name: String) throws -> String {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let d = env["FINCH_MODEL_DIR"] { candidates.append(d + "/" + file) }
        let home = env["FINCH_HOME"] ?? (env["XDG_CACHE_HOME"].map { $0 + "/finch" } ?? NSHomeDirectory() + "/.cache/finch")
        candidates.append(home + "/models/" + file)
        if let p = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return p }
        if env["CI"] != nil { XCTFail("\(file) not found in \(candidates); CI must fetch it (Scripts/fetch-model.sh \(name))") }
        throw XCTSkip("\(file) not downloaded (run Scripts/fetch-model.sh \(name))")
    }
}

/// max |a - b|
public func maxAbsDiff(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
