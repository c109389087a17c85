import FinchCore
import FinchFormats
import Foundation

/// Mistral 7B v0.1-v0.3 style checkpoints (`MistralForCausalLM`): the LLaMA layout with
/// sliding-window attention on every layer.
extension ModelFamily {
    public static let mistral = ModelFamily(
        name: "mistral", modelTypes: ["mistral"], architectures: ["MistralForCausalLM"], ggufArchitectures: [],
        readConfig: { data, path in try MistralConfig(json: data, path: path) },
        readGGUF: nil)   // llama.cpp converts Mistral to its "llama" architecture (the window is not kept)
}

/// `config.json` of a Mistral model: LLaMA's keys plus `sliding_window` (null = full attention).
public struct MistralConfig: DecoderConfig, Equatable {
    public var base: LlamaConfig
    public var vocabSize: Int {
        get { base.vocabSize }
        set { base.vocabSize = newValue }
    }
    public var slidingWindow: Int?

    public init(json data: Data, path: String) throws {
        base = try LlamaConfig(json: data, path: path)
        let extra = try LlamaConfig.decode(LayerTypesConfig.self, from: data, path: path)
        if let t = extra.layerTypes {
            throw ModelError.unsupportedOption(path: path, key: "layer_types", value: "\(t)",
                                               supported: "none in a Mistral config (alternating attention is Ministral's)")
        }
        if base.attentionBias || base.mlpBias {
            throw ModelError.unsupportedOption(path: path, key: "attention_bias / mlp_bias", value: "true",
                                               supported: "false (Mistral has no biases)")
        }
        if let w = extra.slidingWindow, w <= 0 { throw ModelError.invalidConfig(path: path, reason: "sliding_window must be positive") }
        slidingWindow = extra.slidingWindow
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: "mistral")
        s.slidingWindows = Array(repeating: slidingWindow, count: base.numHiddenLayers)
        return s
    }

    public var names: DecoderNames { .llamaLayout }
    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue {
        base.huggingFaceConfigJSON(torchDType: torchDType, tieWordEmbeddings: tieWordEmbeddings).patched(
            set: [("architectures", .array([.string("MistralForCausalLM")])), ("model_type", .string("mistral")),
                  ("sliding_window", slidingWindow.map { .number(String($0)) } ?? .null)],
            remove: ["attention_bias", "mlp_bias", "pretraining_tp"])
    }

    public func generationConfigJSON() -> JSONValue { base.generationConfigJSON() }
}

extension MistralConfig {
    /// llama.cpp's `llama` architecture, which keeps no sliding window: a model that uses one is refused.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        if let w = slidingWindow, w < base.maxPositionEmbeddings {
            throw ExportError.unsupported(path: path, reason: "this Mistral model attends within a sliding window of \(w) tokens, which llama.cpp's llama architecture does not keep (it would attend to all \(base.maxPositionEmbeddings) positions)")
        }
        return ("llama", try base.ggufKeys(arch: "llama", path: path))
    }
}
