import FinchCore
import FinchFormats
import Foundation

/// Qwen2-MoE (Qwen1.5-MoE, `Qwen2MoeForCausalLM`) and Qwen3-MoE (`Qwen3MoeForCausalLM`): the Qwen2 / Qwen3
/// blocks with a sparse mixture of experts in place of the MLP (`SparseMoE`): `num_experts` SwiGLU experts of
/// `moe_intermediate_size`, `num_experts_per_tok` per token, their softmax weights renormalized by
/// `norm_topk_prob`; Qwen2-MoE adds a shared expert of `shared_expert_intermediate_size` scaled by
/// sigmoid(`shared_expert_gate`). Layers in `mlp_only_layers`, or whose (index + 1) is no multiple of
/// `decoder_sparse_step`, keep a dense MLP of `intermediate_size`. Checkpoints in the per-expert layout
/// (`mlp.experts.E.gate_proj` …, as transformers writes them).
extension ModelFamily {
    public static let qwen2MoE = ModelFamily(
        name: "qwen2_moe", modelTypes: ["qwen2_moe"], architectures: ["Qwen2MoeForCausalLM"], ggufArchitectures: ["qwen2moe"],
        readConfig: { data, path in try QwenMoEConfig(json: data, path: path, family: .qwen2) },
        readGGUF: { try QwenMoEConfig(gguf: $0) })
    public static let qwen3MoE = ModelFamily(
        name: "qwen3_moe", modelTypes: ["qwen3_moe"], architectures: ["Qwen3MoeForCausalLM"], ggufArchitectures: ["qwen3moe"],
        readConfig: { data, path in try QwenMoEConfig(json: data, path: path, family: .qwen3) },
        readGGUF: { try QwenMoEConfig(gguf: $0) })
}

/// `config.json` of a Qwen2-MoE or Qwen3-MoE model: LLaMA's keys, the sliding-window keys and the experts'.
public struct QwenMoEConfig: DecoderConfig, Equatable {
    public enum Generation: String, Sendable { case qwen2 = "qwen2_moe", qwen3 = "qwen3_moe" }
    public var family: Generation
    public var base: LlamaConfig
    public var vocabSize: Int {
        get { base.vocabSize }
        set { base.vocabSize = newValue }
    }
    public var experts: ExpertsSettings
    /// Qwen2-MoE's q / k / v biases (`qkv_bias`).
    public var qkvBias: Bool
    public var windows: LayerTypesConfig
    /// The window of each layer (nil = full attention).
    public var layerWindows: [Int?]

    struct Keys: Decodable {
        var qkvBias: Bool?
        enum CodingKeys: String, CodingKey { case qkvBias = "qkv_bias" }
    }

    public init(json data: Data, path: String, family: Generation) throws {
        self.family = family
        base = try LlamaConfig(json: data, path: path)
        let layers = base.numHiddenLayers
        switch family {
        case .qwen2:
            if base.attentionBias || base.mlpBias {
                throw ModelError.unsupportedOption(path: path, key: "attention_bias / mlp_bias", value: "true",
                                                   supported: "absent (Qwen2-MoE's q/k/v biases are qkv_bias)")
            }
            qkvBias = try LlamaConfig.decode(Keys.self, from: data, path: path).qkvBias ?? true
            experts = try ExpertsSettings(json: data, path: path, layers: layers, defaults: ExpertsSettings(
                numExperts: 60, numExpertsPerTok: 4, expertSize: 1408, sharedExpertSize: 5632, normTopkProb: false,
                routerAuxLossCoef: 0.001), sparseLayerKeys: true)
        case .qwen3:
            if base.mlpBias { throw ModelError.unsupportedOption(path: path, key: "mlp_bias", value: "true", supported: "false") }
            qkvBias = false
            experts = try ExpertsSettings(json: data, path: path, layers: layers, defaults: ExpertsSettings(
                numExperts: 128, numExpertsPerTok: 8, expertSize: 768, normTopkProb: false, routerAuxLossCoef: 0.001),
                sparseLayerKeys: true)
        }
        windows = try LlamaConfig.decode(LayerTypesConfig.self, from: data, path: path)
        if windows.layerTypes == nil, windows.useSlidingWindow == true {
            guard let w = windows.slidingWindow, w > 0 else {
                throw ModelError.invalidConfig(path: path, reason: "use_sliding_window is true but sliding_window is not a positive number")
            }
            switch family {
            case .qwen2:
                // Qwen2-MoE slides on the even layers below max_window_layers (transformers' default layer_types).
                let below = windows.maxWindowLayers ?? 28
                layerWindows = (0..<layers).map { i in i % 2 == 0 && i < below ? w : nil }
            case .qwen3:
                layerWindows = Array(repeating: w, count: layers)   // every layer
            }
        } else {
            layerWindows = try windows.qwenWindows(layers: layers, path: path)
        }
    }

    /// A GGUF of llama.cpp's `qwen2moe` (experts and a shared expert in every layer, the top-k weights as the softmax
    /// gives them, q/k/v biases) or `qwen3moe` (every layer sparse, the top-k weights renormalized, q/k norms, no
    /// attention biases); both attend to every earlier position.
    public init(gguf: GGUFFile) throws {
        let arch = gguf.metadata["general.architecture"]?.stringValue ?? "?"
        family = arch == "qwen2moe" ? .qwen2 : .qwen3
        base = try LlamaConfig.load(gguf: gguf)
        qkvBias = family == .qwen2 && base.attentionBias
        base.attentionBias = false
        experts = try ExpertsSettings(gguf: gguf, arch: arch, expertSize: nil, shared: family == .qwen2, normalized: family == .qwen3)
        windows = LayerTypesConfig()
        layerWindows = Array(repeating: nil, count: base.numHiddenLayers)
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: family.rawValue)
        switch family {
        case .qwen2: s.qkvBias = qkvBias; s.outputBias = false
        case .qwen3: s.qkNorm = true
        }
        s.slidingWindows = layerWindows
        s.moe = experts.spec(layers: base.numHiddenLayers)
        return s
    }

    public var names: DecoderNames {
        var n = DecoderNames.llamaLayout
        n.moe = family == .qwen2 ? .qwen2 : .qwen
        n.ggufRequiresOutput = family == .qwen2   // llama.cpp's qwen2moe needs `output`; qwen3moe reuses the embedding
        return n
    }

    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue {
        let arch = family == .qwen2 ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM"
        let window = layerWindows.compactMap { $0 }.first ?? windows.slidingWindow
        var set: [(String, JSONValue)] = [
            ("architectures", .array([.string(arch)])), ("model_type", .string(family.rawValue)),
            ("use_sliding_window", .bool(layerWindows.contains { $0 != nil })),
            ("sliding_window", window.map { .number(String($0)) } ?? .null),
        ] + experts.json(sparseLayerKeys: true)
        var remove = ["mlp_bias", "pretraining_tp"]
        switch family {
        case .qwen2:
            set += [("qkv_bias", .bool(qkvBias)), ("layer_types", LayerTypesConfig.layerTypesJSON(layerWindows))]
            remove.append("attention_bias")
        case .qwen3:
            set.append(("attention_bias", .bool(base.attentionBias)))
        }
        return base.huggingFaceConfigJSON(torchDType: torchDType, tieWordEmbeddings: tieWordEmbeddings).patched(set: set, remove: remove)
    }

    public func generationConfigJSON() -> JSONValue { base.generationConfigJSON() }

    /// llama.cpp's `qwen3moe` (Qwen3-MoE as Qwen3-30B-A3B is made: experts in every layer, renormalized, no attention
    /// biases, full attention) or `qwen2moe` (Qwen1.5-MoE's: experts and the shared expert in every layer, not
    /// renormalized, q/k/v biases, full attention). What the architecture does not compute is refused by name.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        let arch = family == .qwen2 ? "qwen2moe" : "qwen3moe"
        func refuse(_ what: String) -> Error { ExportError.unsupported(path: path, reason: "\(what): llama.cpp's \(arch) architecture does not compute it") }
        let spec = decoderSpec
        if layerWindows.contains(where: { $0 != nil }) { throw refuse("sliding-window layers") }
        if let dense = spec.moe?.denseLayers.sorted(), !dense.isEmpty { throw refuse("dense MLP layers \(dense) (mlp_only_layers / decoder_sparse_step)") }
        switch family {
        case .qwen2:
            if experts.normTopkProb { throw refuse("norm_topk_prob true (it renormalizes the chosen experts' weights)") }
            if experts.sharedExpertSize == nil { throw refuse("a Qwen2-MoE without a shared expert") }
        case .qwen3:
            if base.attentionBias { throw refuse("attention_bias") }
            if !experts.normTopkProb { throw refuse("norm_topk_prob false (it leaves the chosen experts' weights unrenormalized)") }
        }
        var keys = base
        keys.attentionBias = false   // qwen2moe's q/k/v biases are tensors of the architecture
        return (arch, try keys.ggufKeys(arch: arch, path: path) + experts.ggufKeys(arch: arch, sizeKey: true))
    }
}
