import FinchCore
import FinchFormats
import FinchQuant
import Foundation

/// A decoder family's config, read from `config.json` or GGUF metadata and validated: what
/// `DecoderModel` is built from, and what an export writes back.
public protocol DecoderConfig: Sendable {
    /// The blocks' sizes and parts.
    var decoderSpec: DecoderSpec { get }
    /// The checkpoint's names.
    var names: DecoderNames { get }
    /// PEFT's default `target_modules` for the family.
    var defaultTargetModules: [String] { get }
    /// `config.json` as transformers writes it for this family (keys sorted).
    func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue
    /// `generation_config.json`.
    func generationConfigJSON() -> JSONValue
    /// What training this model does differently from transformers' training mode, said to the
    /// user when a run starts (e.g. dropout inside the base model, which Finch does not apply).
    var trainingCaveats: [String] { get }
}

extension DecoderConfig {
    public var trainingCaveats: [String] { [] }
}

/// One model family: the names it answers to in Hugging Face configs and GGUF files, and how
/// to read its config from each.
public struct ModelFamily: Sendable {
    /// The registry name (`llama`).
    public let name: String
    /// `model_type` values of `config.json`.
    public let modelTypes: [String]
    /// `architectures` entries of `config.json` (the causal-LM classes).
    public let architectures: [String]
    /// `general.architecture` values of GGUF files.
    public let ggufArchitectures: [String]
    /// Reads and validates `config.json` (its bytes, its path for messages).
    let readConfig: @Sendable (_ json: Data, _ path: String) throws -> any DecoderConfig
    /// Reads and validates the family's GGUF metadata.
    let readGGUF: (@Sendable (_ file: GGUFFile) throws -> any DecoderConfig)?

    public init(name: String, modelTypes: [String], architectures: [String], ggufArchitectures: [String],
                readConfig: @escaping @Sendable (Data, String) throws -> any DecoderConfig,
                readGGUF: (@Sendable (GGUFFile) throws -> any DecoderConfig)?) {
        self.name = name; self.modelTypes = modelTypes; self.architectures = architectures
        self.ggufArchitectures = ggufArchitectures; self.readConfig = readConfig; self.readGGUF = readGGUF
    }
}

/// The model families Finch implements, one line each. Anything else is refused by name.
public enum ModelRegistry {
    public static let families: [ModelFamily] = [
        .llama,
        .mistral,
        .qwen2,
        .qwen3,
        .gemma3,
        .gpt2,
    ]

    /// Encoder-decoder families: loaded as `Seq2SeqLM` (through `Seq2SeqLanguageModel`).
    public static let encoderDecoderFamilies: [EncoderDecoderFamily] = [
        .t5,
    ]

    /// `model_type` values Finch reads.
    public static var supportedModelTypes: [String] { families.flatMap(\.modelTypes) + encoderDecoderFamilies.flatMap(\.modelTypes) }

    /// The encoder-decoder family of a Hugging Face directory's `config.json`, nil when it is
    /// not one (or not a directory).
    public static func encoderDecoderFamily(directory: String) -> EncoderDecoderFamily? {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path), let json = try? JSONParser.parse([UInt8](data)),
              case .string(let type)? = json["model_type"] else { return nil }
        return encoderDecoderFamilies.first { $0.modelTypes.contains(type) }
    }

    /// The family of a `config.json`: by `model_type`, with every `architectures` entry checked
    /// to be that family's causal LM (a `…ForSequenceClassification` has no LM head to train).
    public static func family(configJSON data: Data, path: String) throws -> ModelFamily {
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch {
            throw ModelError.invalidConfig(path: path, reason: "not valid JSON: \(error)")
        }
        guard case .string(let type)? = json["model_type"] else {
            throw ModelError.invalidConfig(path: path, reason: "there is no \"model_type\"; Finch reads it to know the architecture (supported: \(supportedModelTypes.joined(separator: ", ")))")
        }
        if let e = encoderDecoderFamilies.first(where: { $0.modelTypes.contains(type) }) {
            throw ModelError.encoderDecoder(path: path, family: e.name)
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

    /// Reads a Hugging Face directory's `config.json` through its family.
    public static func config(directory: String) throws -> any DecoderConfig {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.notFound(path: path, hint: "An HF-layout model directory needs config.json.")
        }
        return try family(configJSON: data, path: path).readConfig(data, path)
    }

    /// Reads a GGUF file's config through the family of its `general.architecture`.
    public static func config(gguf: GGUFFile) throws -> any DecoderConfig {
        let arch = gguf.metadata["general.architecture"]?.stringValue ?? "(none)"
        let supported = families.filter { $0.readGGUF != nil }.flatMap(\.ggufArchitectures)
        guard let family = families.first(where: { $0.ggufArchitectures.contains(arch) }), let read = family.readGGUF else {
            throw ModelError.unsupportedArchitecture(path: gguf.path, architecture: arch, supported: supported)
        }
        return try read(gguf)
    }

    /// Builds a model from a config and its weights (see `DecoderModel.load`).
    public static func load(from source: WeightSource, config: any DecoderConfig, dtype: WeightDType,
                            quantization: QuantizationConfig? = nil) throws -> any CausalLM {
        try DecoderModel.load(from: source, config: config, dtype: dtype, quantization: quantization)
    }
}

/// An encoder-decoder family: the names it answers to in `config.json` and how to load a
/// Hugging Face directory of it.
public struct EncoderDecoderFamily: Sendable {
    public let name: String
    public let modelTypes: [String]
    public let architectures: [String]
    let load: @Sendable (_ directory: String, _ dtype: WeightDType, _ quantization: QuantizationConfig?) throws -> any Seq2SeqLM

    public init(name: String, modelTypes: [String], architectures: [String],
                load: @escaping @Sendable (String, WeightDType, QuantizationConfig?) throws -> any Seq2SeqLM) {
        self.name = name; self.modelTypes = modelTypes; self.architectures = architectures; self.load = load
    }
}
