import FinchCore
import FinchFormats
import Foundation

/// Qwen2 and Qwen2.5 (`Qwen2ForCausalLM`): the LLaMA layout with biases on q, k and v, and
/// optional sliding-window attention on the upper layers.
extension ModelFamily {
    public static let qwen2 = ModelFamily(
        name: "qwen2", modelTypes: ["qwen2"], architectures: ["Qwen2ForCausalLM"], ggufArchitectures: ["qwen2"],
        readConfig: { data, path in try QwenConfig(json: data, path: path, family: .qwen2) },
        readGGUF: { try QwenConfig(gguf: $0, family: .qwen2) })
}

/// `config.json` of a Qwen2 or Qwen3 model: LLaMA's keys plus the sliding-window keys
/// (`use_sliding_window`, `sliding_window`, `max_window_layers`, `layer_types`).
public struct QwenConfig: DecoderConfig, Equatable {
    public enum Generation: String, Sendable { case qwen2, qwen3 }
    public var family: Generation
    public var base: LlamaConfig
    public var vocabSize: Int {
        get { base.vocabSize }
        set { base.vocabSize = newValue }
    }
    public var windows: LayerTypesConfig
    /// The window of each layer (nil = full attention).
    public var layerWindows: [Int?]

    public init(json data: Data, path: String, family: Generation) throws {
        self.family = family
        base = try LlamaConfig.decode(LlamaConfig.self, from: data, path: path)
        if family == .qwen3, (try? JSONParser.parse([UInt8](data)))?["head_dim"] == nil {
            base.headDim = 128   // transformers' Qwen3Config default
        }
        try base.validate(path: path)
        if family == .qwen2 && (base.attentionBias || base.mlpBias) {
            throw ModelError.unsupportedOption(path: path, key: "attention_bias / mlp_bias", value: "true",
                                               supported: "absent (Qwen2 always has q/k/v biases and no others)")
        }
        if base.mlpBias { throw ModelError.unsupportedOption(path: path, key: "mlp_bias", value: "true", supported: "false") }
        windows = try LlamaConfig.decode(LayerTypesConfig.self, from: data, path: path)
        layerWindows = try windows.qwenWindows(layers: base.numHiddenLayers, path: path)
    }

    /// A GGUF of llama.cpp's `qwen2` / `qwen3` architecture (full attention on every layer).
    public init(gguf: GGUFFile, family: Generation) throws {
        self.family = family
        base = try LlamaConfig.load(gguf: gguf)
        base.attentionBias = false
        windows = LayerTypesConfig()
        layerWindows = Array(repeating: nil, count: base.numHiddenLayers)
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: family.rawValue)
        switch family {
        case .qwen2: s.qkvBias = true; s.outputBias = false
        case .qwen3: s.qkNorm = true
        }
        s.slidingWindows = layerWindows
        return s
    }

    public var names: DecoderNames { .llamaLayout }
    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue {
        let arch = family == .qwen2 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM"
        let window = layerWindows.compactMap { $0 }.first ?? windows.slidingWindow
        var set: [(String, JSONValue)] = [
            ("architectures", .array([.string(arch)])), ("model_type", .string(family.rawValue)),
            ("use_sliding_window", .bool(layerWindows.contains { $0 != nil })),
            ("sliding_window", window.map { .number(String($0)) } ?? .null),
            ("max_window_layers", .number(String(layerWindows.firstIndex { $0 != nil } ?? base.numHiddenLayers))),
            ("layer_types", LayerTypesConfig.layerTypesJSON(layerWindows)),
        ]
        var remove = ["mlp_bias", "pretraining_tp"]
        if family == .qwen2 { remove.append("attention_bias") } else { set.append(("attention_bias", .bool(base.attentionBias))) }
        return base.huggingFaceConfigJSON(torchDType: torchDType, tieWordEmbeddings: tieWordEmbeddings)
            .patched(set: set, remove: remove)
    }

    public func generationConfigJSON() -> JSONValue { base.generationConfigJSON() }
}

extension QwenConfig {
    /// llama.cpp's `qwen2` / `qwen3` architecture, which keeps no sliding-window layers.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        if layerWindows.contains(where: { $0 != nil }) {
            throw ExportError.unsupported(path: path, reason: "sliding-window layers (use_sliding_window) are not kept by llama.cpp's \(family.rawValue) architecture")
        }
        var base = self.base
        base.attentionBias = false   // qwen2's q/k/v biases are part of the architecture
        return (family.rawValue, try base.ggufKeys(arch: family.rawValue, path: path))
    }
}
