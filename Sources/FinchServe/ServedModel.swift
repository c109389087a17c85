import FinchLoRA
import FinchModels
import FinchNet
import FinchTokenizer
import Foundation

/// The model a server answers with: the engine that runs it, its name, its context length and
/// the adapters loaded into it (each a model of its own in the API).
public final class ServedModel: @unchecked Sendable {
    public let engine: InferenceEngine
    /// The base model's id in the API (`"base"` is accepted too).
    public let name: String
    /// Prompt plus new tokens of one sequence at most.
    public let contextLength: Int
    public let created: Int
    private let lock = NSLock()
    private var adapterPaths: [String: String]

    public var lm: LoadedModel { engine.lm }
    public var tokenizer: Tokenizer { engine.lm.tokenizer }

    /// `adapters`: name → directory of the adapters already loaded into `engine`'s model.
    public init(engine: InferenceEngine, name: String, contextLength: Int, adapters: [String: String]) {
        self.engine = engine; self.name = name; self.contextLength = contextLength
        self.adapterPaths = adapters
        created = Int(Date().timeIntervalSince1970)
    }

    /// Loads `adapters` (PEFT directories) into `lm` (none active: each request picks its own) and
    /// starts an engine over it. The context defaults to the model's positions, at most 4096.
    public static func start(lm: LoadedModel, adapters: [(name: String, directory: String)], maxBatch: Int,
                             contextLength: Int? = nil, name: String, observer: (any EngineObserver)? = nil) throws -> ServedModel {
        var paths: [String: String] = [:]
        for (adapter, dir) in adapters {
            if let problem = adapterNameProblem(adapter, base: name, taken: paths) { throw ModelError.adapterProblem(problem) }
            try lm.loadAdapter(directory: dir, name: adapter)
            paths[adapter] = dir
        }
        lm.model.setActiveAdapter(nil)
        let engine = InferenceEngine(lm: lm, maxBatch: maxBatch)
        engine.observer = observer
        return ServedModel(engine: engine, name: name, contextLength: contextLength ?? min(lm.model.maxPositions, 4096),
                           adapters: paths)
    }

    /// Why `adapter` cannot name a new adapter beside the base model `base` and the adapters `taken`.
    static func adapterNameProblem(_ adapter: String, base: String, taken: [String: String]) -> String? {
        if adapter.isEmpty || adapter == base || adapter == "base" { return "an adapter cannot be called '\(adapter)'" }
        if taken[adapter] != nil { return "an adapter named '\(adapter)' is already loaded; pick another name" }
        return nil
    }

    /// Loaded adapters: name → directory.
    public var adapters: [String: String] {
        lock.lock(); defer { lock.unlock() }
        return adapterPaths
    }

    /// Every model id the API answers to.
    var modelIds: [String] { [name] + adapters.keys.sorted() }

    /// The adapter a request names (nil: the base model); `adapter` wins over `model`.
    func resolve(model: String?, adapter: String?) throws -> String? {
        let known = adapters
        if let adapter {
            if adapter == name || adapter == "base" || adapter.isEmpty { return nil }
            guard known[adapter] != nil else { throw APIError.modelNotFound(adapter, known: modelIds) }
            return adapter
        }
        guard let model, model != name, model != "base", !model.isEmpty else { return nil }
        guard known[model] != nil else { throw APIError.modelNotFound(model, known: modelIds) }
        return model
    }

    /// Loads a PEFT adapter directory (or a Hub id's adapter, through the Hugging Face cache) under `name`,
    /// between two forward passes.
    public func loadAdapter(name: String, directory spec: String) async throws {
        if let problem = Self.adapterNameProblem(name, base: self.name, taken: adapters) {
            throw adapters[name] != nil ? APIError(.conflict, problem, param: "name", code: "adapter_exists")
                : APIError.invalid("name", problem)
        }
        var resolved = spec
        if !FileManager.default.fileExists(atPath: spec), let repo = HubRepoID(spec), repo.file == nil {
            do { resolved = try await HubModel.resolveAsync(repo, kind: .adapter, client: HubModel.client) } catch {
                throw APIError(.badRequest, "Cannot fetch the adapter \(spec) from the Hub: \(error)", param: "path", code: "adapter_load_failed")
            }
        }
        let directory = resolved
        do {
            try await engine.exclusive { lm in
                // Requests read the tokenizer while this runs: an adapter that adds tokens (or brings another
                // tokenizer) loads at startup only.
                let file = (directory as NSString).appendingPathComponent("tokenizer.json")
                if FileManager.default.fileExists(atPath: file), !(try Tokenizer(huggingFaceDirectory: directory)).sameVocabulary(as: lm.tokenizer) {
                    throw ModelError.adapterProblem("the adapter was saved with another tokenizer (tokens added, or another EOS); load it when the server starts (--adapter)")
                }
                if let v = try LoRAAdapter.savedVocabulary(directory: directory, copyable: lm.model.copyableShapes), v > lm.model.vocabSize {
                    throw ModelError.adapterProblem("the adapter adds tokens (its vocabulary has \(v), the model \(lm.model.vocabSize)); load it when the server starts (--adapter)")
                }
                try lm.model.loadAdapter(directory: directory, name: name)
                lm.model.setActiveAdapter(nil)
            }
        } catch {
            throw APIError(.badRequest, "Cannot load the adapter in \(directory): \(error)", param: "path", code: "adapter_load_failed")
        }
        lock.withLock { adapterPaths[name] = directory }
    }
}

/// Whether the server's model is ready: routes that need it answer 503 until then.
public final class ServerState: @unchecked Sendable {
    public enum Phase: Sendable { case loading, ready(ServedModel), failed(String) }
    private let lock = NSLock()
    private var current: Phase = .loading

    public init() {}
    public init(model: ServedModel) { current = .ready(model) }

    public var phase: Phase {
        get { lock.lock(); defer { lock.unlock() }; return current }
        set { lock.lock(); current = newValue; lock.unlock() }
    }

    /// The model, or the error a route answers while there is none.
    func model() throws -> ServedModel {
        switch phase {
        case .ready(let m): return m
        case .loading: throw APIError.loading
        case .failed(let why):
            throw APIError(.serviceUnavailable, "The model failed to load: \(why)", type: "server_error", code: "model_load_failed")
        }
    }
}
