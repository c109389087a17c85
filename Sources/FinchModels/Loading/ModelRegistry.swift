import FinchCore
import FinchFormats
import FinchQuant
import Foundation

/// One model family, of any kind: the names it answers to in Hugging Face configs and GGUF files,
/// and how to build the model from each. The kind is decided here, once, when a model is loaded.
public struct ModelFamily: Sendable {
    /// The registry name (`llama`).
    public let name: String
    public let kind: ModelKind
    /// `model_type` values of `config.json`.
    public let modelTypes: [String]
    /// `architectures` entries of `config.json` (the language-model classes).
    public let architectures: [String]
    /// `general.architecture` values of GGUF files.
    public let ggufArchitectures: [String]
    /// A decoder family's config reader (`config.json` bytes, its path for messages); nil for
    /// other kinds.
    let readConfig: (@Sendable (_ json: Data, _ path: String) throws -> any DecoderConfig)?
    /// Reads and validates the family's GGUF metadata (decoder families that load from GGUF).
    let readGGUF: (@Sendable (_ file: GGUFFile) throws -> any DecoderConfig)?
    /// Builds the model from a GGUF file of one of `ggufArchitectures` (nil: the family reads none);
    /// `keepBlocks`: linear weights of llama.cpp's quantized types stay in their blocks.
    let loadGGUF: (@Sendable (_ file: GGUFFile, _ dtype: WeightDType, _ quantization: QuantizationConfig?,
                              _ keepBlocks: Bool) throws -> any LanguageModel)?
    /// Builds the model from `config.json` (bytes, path) and a Hugging Face directory's weights.
    let loadHuggingFace: @Sendable (_ json: Data, _ path: String, _ source: WeightSource, _ dtype: WeightDType,
                                    _ quantization: QuantizationConfig?) throws -> any LanguageModel

    /// A decoder-only family: its config readers; the model is a `DecoderModel`.
    public init(name: String, modelTypes: [String], architectures: [String], ggufArchitectures: [String],
                readConfig: @escaping @Sendable (Data, String) throws -> any DecoderConfig,
                readGGUF: (@Sendable (GGUFFile) throws -> any DecoderConfig)?) {
        self.name = name; self.kind = .decoderOnly; self.modelTypes = modelTypes; self.architectures = architectures
        self.ggufArchitectures = ggufArchitectures; self.readConfig = readConfig; self.readGGUF = readGGUF
        loadHuggingFace = { json, path, source, dtype, quantization in
            try DecoderModel.load(from: source, config: try readConfig(json, path), dtype: dtype, quantization: quantization)
        }
        if let readGGUF {
            loadGGUF = { (file: GGUFFile, dtype: WeightDType, quantization: QuantizationConfig?, keepBlocks: Bool) throws -> any LanguageModel in
                let config = try readGGUF(file)
                return try DecoderModel.load(from: GGUFWeightSource(file: file, config: config, keepsBlocks: keepBlocks), config: config,
                                             dtype: dtype, quantization: quantization)
            }
        } else {
            loadGGUF = nil
        }
    }

    /// A family of another kind, loaded from Hugging Face directories by `load` and, when given,
    /// from GGUF files of `ggufArchitectures` by `loadGGUF`.
    public init(name: String, kind: ModelKind, modelTypes: [String], architectures: [String],
                ggufArchitectures: [String] = [],
                loadGGUF: (@Sendable (GGUFFile, WeightDType, QuantizationConfig?, Bool) throws -> any LanguageModel)? = nil,
                load: @escaping @Sendable (Data, String, WeightSource, WeightDType, QuantizationConfig?) throws -> any LanguageModel) {
        self.name = name; self.kind = kind; self.modelTypes = modelTypes; self.architectures = architectures
        self.ggufArchitectures = ggufArchitectures; self.readConfig = nil; self.readGGUF = nil; self.loadHuggingFace = load
        self.loadGGUF = loadGGUF
    }
}

/// The model families Finch implements, every kind in one list, one line each. Anything else is
/// refused by name.
public enum ModelRegistry {
    public static let families: [ModelFamily] = [
        .llama,
        .mistral,
        .mixtral,
        .qwen2,
        .qwen3,
        .qwen2MoE,
        .qwen3MoE,
        .olmoe,
        .gemma3,
        .gpt2,
        .t5,
    ]

    /// `model_type` values Finch reads.
    public static var supportedModelTypes: [String] { families.flatMap(\.modelTypes) }

    /// The family of a parsed `config.json`: by `model_type`, with every `architectures` entry
    /// checked to be that family's language model (a `…ForSequenceClassification` has no LM head).
    public static func family(config json: JSONValue, path: String) throws -> ModelFamily {
        guard case .string(let type)? = json["model_type"] else {
            throw ModelError.invalidConfig(path: path, reason: "there is no \"model_type\"; Finch reads it to know the architecture (supported: \(supportedModelTypes.joined(separator: ", ")))")
        }
        guard let family = families.first(where: { $0.modelTypes.contains(type) }) else {
            throw ModelError.unsupportedArchitecture(path: path, architecture: type, supported: supportedModelTypes)
        }
        if case .array(let list)? = json["architectures"] {
            for case .string(let a) in list where !family.architectures.contains(a) {
                throw ModelError.unsupportedArchitecture(path: path, architecture: a, supported: families.flatMap(\.architectures))
            }
        }
        return family
    }

    /// `config.json` of a Hugging Face directory: its bytes, parsed, and its family.
    public static func readConfig(directory: String) throws -> (data: Data, json: JSONValue, path: String, family: ModelFamily) {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.notFound(path: path, hint: "An HF-layout model directory needs config.json.")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch {
            throw ModelError.invalidConfig(path: path, reason: "not valid JSON: \(error)")
        }
        return (data, json, path, try family(config: json, path: path))
    }

    /// Reads a Hugging Face directory's `config.json` through its decoder family (what GGUF
    /// export and memory planning work from).
    public static func config(directory: String) throws -> any DecoderConfig {
        let c = try readConfig(directory: directory)
        guard let read = c.family.readConfig else {
            throw ModelError.notForKind(what: "this command", kind: c.family.kind, advice: "\(c.path) is a \(c.family.name) model; use a decoder-only model")
        }
        return try read(c.data, c.path)
    }

    /// The model of a GGUF file, of any kind, built by the family of its `general.architecture`;
    /// with `keepBlocks` (and no `quantization`), linear weights of llama.cpp's quantized types
    /// stay in their blocks (`GGUFBlockMatrix`), products in `dtype`.
    public static func model(gguf file: GGUFFile, dtype: WeightDType = .f32, quantization: QuantizationConfig? = nil,
                             keepBlocks: Bool = false) throws -> (model: any LanguageModel, family: ModelFamily) {
        let family = try family(gguf: file, among: families.filter { $0.loadGGUF != nil })
        return (try family.loadGGUF!(file, dtype, quantization, keepBlocks), family)
    }

    /// Reads a GGUF file's config through the decoder family of its `general.architecture`.
    public static func config(gguf: GGUFFile) throws -> any DecoderConfig {
        try family(gguf: gguf, among: families.filter { $0.readGGUF != nil }).readGGUF!(gguf)
    }

    /// The family among `supported` whose GGUF architectures hold the file's `general.architecture`;
    /// another is refused by name, with the supported list.
    static func family(gguf file: GGUFFile, among supported: [ModelFamily]) throws -> ModelFamily {
        let arch = file.metadata["general.architecture"]?.stringValue ?? "(none)"
        guard let family = supported.first(where: { $0.ggufArchitectures.contains(arch) }) else {
            throw ModelError.unsupportedArchitecture(path: file.path, architecture: arch, supported: supported.flatMap(\.ggufArchitectures))
        }
        return family
    }
}
