import Foundation

/// A model or adapter named by its Hugging Face Hub id: `ORG/NAME`, optionally `@REVISION` (a branch,
/// tag or commit; default `main`) and `:FILE` (a GGUF repository's file: its name, or a quant type
/// such as `Q4_K_M` that one file name holds, as llama.cpp's `-hf ORG/NAME:Q4_K_M`).
public struct HubRepoID: Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var revision: String
    public var file: String?

    public init(id: String, revision: String = "main", file: String? = nil) {
        self.id = id; self.revision = revision; self.file = file
    }

    /// Reads `ORG/NAME[@REVISION][:FILE]`; nil for anything else (a path, a short name).
    public init?(_ spec: String) {
        var rest = Substring(spec)
        var file: String?
        if let colon = rest.lastIndex(of: ":") {
            file = String(rest[rest.index(after: colon)...]); rest = rest[..<colon]
            if file!.isEmpty { return nil }
        }
        var revision = "main"
        if let at = rest.firstIndex(of: "@") {
            revision = String(rest[rest.index(after: at)...]); rest = rest[..<at]
            if revision.isEmpty || revision.contains("..") { return nil }
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        func isName(_ s: Substring) -> Bool {
            !s.isEmpty && s.count <= 96 && s.first != "." && s.first != "-" && !s.contains("..")
                && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
        }
        guard parts.count == 2, isName(parts[0]), isName(parts[1]) else { return nil }
        if let f = file, f.contains("/") || f.hasPrefix(".") { return nil }
        self.init(id: String(rest), revision: revision, file: file)
    }

    /// `models--ORG--NAME`, the repository's folder in the cache.
    public var cacheFolder: String { "models--" + id.replacingOccurrences(of: "/", with: "--") }

    /// The revision is a full commit hash.
    public var isCommit: Bool { Self.isCommitHash(revision) }

    static func isCommitHash(_ s: String) -> Bool { s.count == 40 && s.allSatisfy(\.isHexDigit) }

    public var description: String { id + (revision == "main" ? "" : "@" + revision) + (file.map { ":" + $0 } ?? "") }
}

/// Where the Hub is and where its files are kept, from the environment as huggingface_hub reads it:
/// `HF_ENDPOINT` (default https://huggingface.co), `HF_HUB_CACHE` (else `HUGGINGFACE_HUB_CACHE`, else
/// `$HF_HOME/hub`, `HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`), the
/// token from `HF_TOKEN` (else `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH` or `$HF_HOME/token`),
/// `HF_HUB_OFFLINE` (1, true, yes or on: never use the network).
public struct HubSettings: Sendable {
    public var endpoint: String
    public var cacheDirectory: String
    public var token: String?
    public var offline: Bool

    public init(endpoint: String, cacheDirectory: String, token: String?, offline: Bool) {
        self.endpoint = endpoint; self.cacheDirectory = cacheDirectory; self.token = token; self.offline = offline
    }

    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> HubSettings {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        let home = value("HF_HOME")
            ?? (value("XDG_CACHE_HOME").map { ($0 as NSString).appendingPathComponent("huggingface") }
                ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/huggingface").path)
        let cache = value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE") ?? (home as NSString).appendingPathComponent("hub")
        var token = value("HF_TOKEN") ?? value("HUGGING_FACE_HUB_TOKEN")
        if token == nil {
            let file = value("HF_TOKEN_PATH") ?? (home as NSString).appendingPathComponent("token")
            token = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if token?.isEmpty == true { token = nil }
        }
        let offline = ["1", "true", "yes", "on"].contains(value("HF_HUB_OFFLINE")?.lowercased() ?? "")
        var endpoint = value("HF_ENDPOINT") ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        return HubSettings(endpoint: endpoint, cacheDirectory: cache, token: token, offline: offline)
    }
}
