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
    public var numLocalExperts: Int
    public var numExpertsPerTok: Int
    public var routerAuxLossCoef: Double
    public var outputRouterLogits: Bool

    struct Experts: Decodable {
        var numLocalExperts: Int?
        var numExpertsPerTok: Int?
        var routerAuxLossCoef: Double?
        var outputRouterLogits: Bool?
        var routerJitterNoise: Double?
        var slidingWindow: Int?
        enum CodingKeys: String, CodingKey {
            case numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok"
            case routerAuxLossCoef = "router_aux_loss_coef", outputRouterLogits = "output_router_logits"
            case routerJitterNoise = "router_jitter_noise", slidingWindow = "sliding_window"
        }
    }

    /// A llama.cpp GGUF of the `llama` architecture with experts (`llama.expert_count`, `expert_used_count`).
    public init(gguf: GGUFFile) throws {
        base = try LlamaConfig.load(gguf: gguf)
        numLocalExperts = try gguf.requiredInt("llama.expert_count")
        numExpertsPerTok = try gguf.requiredInt("llama.expert_used_count")
        guard numLocalExperts >= 1, numExpertsPerTok >= 1, numExpertsPerTok <= numLocalExperts else {
            throw ModelError.invalidConfig(path: gguf.path, reason: "llama.expert_used_count \(numExpertsPerTok) must be in 1 ... llama.expert_count \(numLocalExperts)")
        }
        slidingWindow = nil
        routerAuxLossCoef = 0.001
        outputRouterLogits = false
    }

    public init(json data: Data, path: String) throws {
        base = try LlamaConfig(json: data, path: path)
        let e = try LlamaConfig.decode(Experts.self, from: data, path: path)
        if base.attentionBias || base.mlpBias {
            throw ModelError.unsupportedOption(path: path, key: "attention_bias / mlp_bias", value: "true", supported: "false (Mixtral has no biases)")
        }
        numLocalExperts = e.numLocalExperts ?? 8
        numExpertsPerTok = e.numExpertsPerTok ?? 2
        guard numLocalExperts >= 1, numExpertsPerTok >= 1, numExpertsPerTok <= numLocalExperts else {
            throw ModelError.invalidConfig(path: path, reason: "num_experts_per_tok \(numExpertsPerTok) must be in 1 ... num_local_experts \(numLocalExperts)")
        }
        if let j = e.routerJitterNoise, j != 0 {
            throw ModelError.unsupportedOption(path: path, key: "router_jitter_noise", value: "\(j)",
                                               supported: "0 (Finch does not jitter the router's input in training)")
        }
        routerAuxLossCoef = e.routerAuxLossCoef ?? 0.001
        outputRouterLogits = e.outputRouterLogits ?? false
        if let w = e.slidingWindow, w <= 0 { throw ModelError.invalidConfig(path: path, reason: "sliding_window must be positive") }
        slidingWindow = e.slidingWindow
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: "mixtral")
        s.slidingWindows = Array(repeating: slidingWindow, count: base.numHiddenLayers)
        s.moe = .init(experts: numLocalExperts, topK: numExpertsPerTok, normalize: true, expertSize: base.intermediateSize)
        if outputRouterLogits { s.moe!.auxLossCoef = Float(routerAuxLossCoef) }
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
                  ("num_local_experts", .int(numLocalExperts)), ("num_experts_per_tok", .int(numExpertsPerTok)),
                  ("router_aux_loss_coef", .double(routerAuxLossCoef)), ("output_router_logits", .bool(outputRouterLogits)),
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
                    + [("llama.expert_count", .uint32(UInt32(numLocalExperts))), ("llama.expert_used_count", .uint32(UInt32(numExpertsPerTok)))])
    }
}
