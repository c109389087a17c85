import FinchCore
import FinchFormats
import FinchQuant
import FinchTokenizer
import Foundation

/// A loaded model of any kind with its tokenizer and prompt format: what every consumer holds
/// (the CLI, training, generation, serving, evaluation, export). The kind is decided once, by the
/// registry, when the model loads.
public final class LoadedModel: @unchecked Sendable {
    public let model: any LanguageModel
    /// The tokenizer in use: the model's, or the one an adapter that added tokens was saved with
    /// (`loadAdapter`), or one with tokens added (`addTokens`).
    public private(set) var tokenizer: Tokenizer
    /// Where it was loaded from.
    public let path: String
    /// The registry family it was loaded as.
    public let family: ModelFamily

    public init(model: any LanguageModel, tokenizer: Tokenizer, path: String, family: ModelFamily) {
        self.model = model; self.tokenizer = tokenizer; self.path = path; self.family = family
    }

    /// How prompts, chats and (source, target) pairs become this model's tokens.
    public var prompts: PromptFormat { PromptFormat(kind: model.kind, tokenizer: tokenizer, model: model) }

    /// End-of-sequence ids from the tokenizer and the model config (a model's default stop tokens).
    public var defaultStopTokens: Set<Int> {
        var s = Set(model.eosTokenIds)
        if let e = tokenizer.eosTokenId { s.insert(e) }
        return s
    }

    /// Loads a PEFT adapter directory (or a llama.cpp LoRA `.gguf`) under `name` and makes it active
    /// (`LoRAHost.loadAdapter`), with the tokenizer it was saved with when that one differs from the tokenizer in use
    /// (`Tokenizer.sameVocabulary`: tokens added in training, whose rows the adapter brings, or another EOS): it is
    /// put in use, its chat template replaced by one given with `useChatTemplate`, and kept from the tokenizer in use
    /// when it has none. Call it before the model is shared (a server swaps no tokenizer under running requests).
    public func loadAdapter(directory spec: String, name: String = "default") throws {
        let directory = try ModelStore.resolveAdapter(spec)
        var saved: Tokenizer?
        if FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("tokenizer.json")) {
            let t = try Tokenizer(huggingFaceDirectory: directory)
            if !t.sameVocabulary(as: tokenizer) { saved = t }
        }
        try model.loadAdapter(directory: directory, name: name, tokenizerSize: saved?.vocabSize)
        if let t = saved {
            if let given = templateFile ?? (t.chatTemplate == nil ? tokenizer.chatTemplate : nil) { t.chatTemplate = given }
            tokenizer = t
        }
    }

    /// Adds `special` tokens (as special tokens) and then `plain` ones to the tokenizer in use, as
    /// transformers' `add_special_tokens` and `add_tokens` add them (`Tokenizer.adding`), and grows
    /// the model's vocabulary to the tokenizer's as `resize_token_embeddings(len(tokenizer))` does
    /// (new rows drawn around the old rows' mean with `seed`, `MeanResizing`), never shrinking it: a
    /// vocabulary already larger than the tokenizer (Qwen's padded one) holds the new ids as it is.
    /// Returns the id of each token, in order.
    /// - Throws: the tokenizer's errors (an empty token); ``FinchLoRA/AdapterError/unsupported(_:)`` when the
    ///   vocabulary must grow and Finch does not grow it for the model (T5, whose 32128 rows hold a few more ids
    ///   than its tokenizer has).
    @discardableResult
    public func addTokens(special: [String], plain: [String], seed: UInt64) throws -> [Int] {
        var t = tokenizer, ids: [Int] = []
        if !special.isEmpty { let r = try t.adding(special, special: true); t = r.tokenizer; ids += r.added }
        if !plain.isEmpty { let r = try t.adding(plain, special: false); t = r.tokenizer; ids += r.added }
        if t.vocabSize > model.vocabSize { try model.growVocabulary(to: t.vocabSize, rows: [:], seed: seed) }
        tokenizer = t
        return ids
    }

    /// Makes `token` the end-of-sequence token of the tokenizer in use (`Tokenizer.withEOS`).
    public func useEOSToken(_ token: String) throws {
        tokenizer = try tokenizer.withEOS(token)
    }

    /// Uses the Jinja chat template in `file` instead of the tokenizer's own (models whose files
    /// carry none, such as the Gemma 3 270M GGUF or T5). The template is parsed now, so a broken
    /// one fails here, naming the file.
    public func useChatTemplate(file: String) throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ModelError.notFound(path: file, hint: "--chat-template needs a readable Jinja template file.")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ModelError.invalidConfig(path: file, reason: "the chat template is not UTF-8 text")
        }
        do { _ = try ChatTemplate(text) } catch {
            throw ModelError.invalidConfig(path: file, reason: "the chat template does not parse: \(error)")
        }
        tokenizer.chatTemplate = text
        templateFile = text
    }

    /// The chat template given with `useChatTemplate` (it outlives a tokenizer an adapter brings).
    private var templateFile: String?

    /// Loads a GGUF file, a Hugging Face directory, or a known short name (nil = the default model)
    /// of any family and kind the registry knows; with `quantization`, the linear layers are
    /// quantized as they load. A directory saved quantized (`finch quantize`, or transformers +
    /// bitsandbytes) loads its quantized layers as stored, products in
    /// `quantization?.computeDType ?? dtype`. The path is resolved and `config.json` read once.
    /// The model computes on `backend` (nil: `FINCH_BACKEND`, else the CPU). A GGUF's linear
    /// weights of llama.cpp's quantized types stay in their blocks with `ggufBlocks` (and no
    /// `quantization`), products in `dtype`; without it they are dequantized to `dtype` as they load.
    /// `quantCompute` `.int8`: the base's products run in integers (`useInt8Products`).
    public static func load(_ spec: String?, dtype: WeightDType = .f32, ggufBlocks: Bool = false,
                            quantization: QuantizationConfig? = nil, quantCompute: QuantCompute = .exact,
                            backend: BackendKind? = nil) throws -> LoadedModel {
        let compute = try BackendKind.resolve(backend)
        let path = try ModelStore.resolve(spec)
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        if isDir.boolValue {
            let config = try ModelRegistry.readConfig(directory: path)
            // Refuses what Finch cannot read (other methods) before the weights are touched; an
            // int8 checkpoint's llm_int8_threshold applies unless the caller asks for int8 itself.
            var quantization = quantization
            if let stored = try QuantizationConfig(huggingFace: config.json, path: config.path), stored.isInt8, quantization == nil {
                quantization = QuantizationConfig.int8(threshold: stored.int8Threshold!, computeDType: dtype)
            }
            let source = try SafeTensorsWeightSource(directory: path)
            let model = try config.family.loadHuggingFace(config.data, config.path, source, dtype, quantization)
            model.backend = compute
            if quantCompute == .int8 { model.useInt8Products() }
            return LoadedModel(model: model, tokenizer: try Tokenizer(huggingFaceDirectory: path), path: path, family: config.family)
        }
        let file = try GGUFFile(path: path)
        let (model, family) = try ModelRegistry.model(gguf: file, dtype: dtype, quantization: quantization, keepBlocks: ggufBlocks)
        model.backend = compute
        if quantCompute == .int8 { model.useInt8Products() }
        return LoadedModel(model: model, tokenizer: try Tokenizer(gguf: file), path: path, family: family)
    }
}

extension Tokenizer {
    /// The tokenizer of a Hugging Face model directory: tokenizer.json, with tokenizer_config.json
    /// (special tokens, chat template) when there is one.
    public convenience init(huggingFaceDirectory path: String) throws {
        let tjson = (path as NSString).appendingPathComponent("tokenizer.json")
        let tconf = (path as NSString).appendingPathComponent("tokenizer_config.json")
        guard FileManager.default.fileExists(atPath: tjson) else {
            throw ModelError.notFound(path: tjson, hint: "An HF-layout model directory needs tokenizer.json.")
        }
        try self.init(tokenizerJSONAt: tjson, configAt: FileManager.default.fileExists(atPath: tconf) ? tconf : nil)
    }
}
