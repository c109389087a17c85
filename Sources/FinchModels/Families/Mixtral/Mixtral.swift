import FinchCore
import FinchFormats
import Foundation

/// Mixtral (`MixtralForCausalLM`): the Mistral block with a sparse mixture of experts in place of the MLP —
/// `num_local_experts` SwiGLU experts, `num_experts_per_tok` of them per token by the router `gate`, their
/// softmax weights renormalized (`SparseMoE`). Checkpoints in the per-expert layout transformers writes
/// (`block_sparse_moe.experts.E.w1 / w3 / w2`), and llama.cpp's GGUF files of it (its `llama` architecture
/// with `llama.expert_count`: `ffn_gate_inp`, `ffn_gate_exps` …; read by the `llama` family's reader).
extension ModelFamily {
    public static let mixtral = ModelFamily(
        name: "mixtral", modelTypes: ["mixtral"], architectures: ["MixtralForCausalLM"], ggufArchitectures: [],
        readConfig: { data, path in try MixtralConfig(json: data, path: path) },
        readGGUF: nil)
}

/// `config.json` of a Mixtral model: LLaMA's keys, `sliding_window`, and the experts'.
public struct MixtralConfig: DecoderConfig, Equatable {
    public var base: LlamaConfig
    public var vocabSize: Int {
        get { base.vocabSize }
        set { base.vocabSize = newValue }
    }
    public var slidingWindow: Int?
    /// The experts' keys (`num_local_experts`, `num_experts_per_tok`, the load-balancing loss's): every layer sparse,
    /// the experts `intermediate_size` wide, their weights always renormalized.
    public var experts: ExpertsSettings

    struct Keys: Decodable {
        var slidingWindow: Int?
        enum CodingKeys: String, CodingKey { case slidingWindow = "sliding_window" }
    }

    /// A llama.cpp GGUF of the `llama` architecture with experts (`llama.expert_count`, `expert_used_count`).
    public init(gguf: GGUFFile) throws {
        base = try LlamaConfig.load(gguf: gguf)
        experts = try ExpertsSettings(gguf: gguf, arch: "llama", expertSize: base.intermediateSize, shared: false, normalized: true)
        slidingWindow = nil
    }

    public init(json data: Data, path: String) throws {
        base = try LlamaConfig(json: data, path: path)
        if base.attentionBias || base.mlpBias {
            throw ModelError.unsupportedOption(path: path, key: "attention_bias / mlp_bias", value: "true", supported: "false (Mixtral has no biases)")
        }
        experts = try ExpertsSettings(json: data, path: path, layers: base.numHiddenLayers, defaults: ExpertsSettings(
            numExperts: 8, numExpertsPerTok: 2, expertSize: base.intermediateSize, normTopkProb: true, routerAuxLossCoef: 0.001),
            sparseLayerKeys: false)
        // Mixtral's experts are `intermediate_size` wide and always renormalized (it has neither key).
        experts.expertSize = base.intermediateSize
        experts.normTopkProb = true
        let window = try LlamaConfig.decode(Keys.self, from: data, path: path).slidingWindow
        if let w = window, w <= 0 { throw ModelError.invalidConfig(path: path, reason: "sliding_window must be positive") }
        slidingWindow = window
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: "mixtral")
        s.slidingWindows = Array(repeating: slidingWindow, count: base.numHiddenLayers)
        s.moe = experts.spec(layers: base.numHiddenLayers)
        return s
    }

    public var names: DecoderNames {
        var n = DecoderNames.llamaLayout
        n.moe = .mixtral
        n.ggufPermutesQK = true   // llama.cpp's converter stores Mixtral as llama, q / k rows interleaved
        return n
    }

    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue {
        base.huggingFaceConfigJSON(torchDType: torchDType, tieWordEmbeddings: tieWordEmbeddings).patched(
            set: [("architectures", .array([.string("MixtralForCausalLM")])), ("model_type", .string("mixtral")),
                  ("sliding_window", slidingWindow.map { .number(String($0)) } ?? .null),
                  ("num_local_experts", .int(experts.numExperts)), ("num_experts_per_tok", .int(experts.numExpertsPerTok)),
                  ("router_aux_loss_coef", .double(experts.routerAuxLossCoef)), ("output_router_logits", .bool(experts.outputRouterLogits)),
                  ("router_jitter_noise", .double(0))],
            remove: ["attention_bias", "mlp_bias", "pretraining_tp"])
    }

    public func generationConfigJSON() -> JSONValue { base.generationConfigJSON() }

    /// llama.cpp's `llama` architecture with experts (renormalized top-k, as Mixtral); it has no sliding window.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        if let w = slidingWindow, w < base.maxPositionEmbeddings {
            throw ExportError.unsupported(path: path, reason: "sliding_window \(w): llama.cpp's llama architecture (which holds Mixtral) attends to every earlier position")
        }
        return ("llama", try base.ggufKeys(arch: "llama", path: path)
                    + experts.ggufKeys(arch: "llama", sizeKey: false))
    }
}
