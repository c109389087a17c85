import FinchCore
import FinchFormats
import Foundation

/// OLMoE (`OlmoeForCausalLM`): the LLaMA block with RMSNorms over the whole q and k projections (not per
/// head) and a sparse mixture of experts in every layer (`SparseMoE`: `num_experts` SwiGLU experts of
/// `intermediate_size`, `num_experts_per_tok` per token, renormalized by `norm_topk_prob`). `clip_qkv`
/// is refused by name. Checkpoints in the per-expert layout (`mlp.experts.E.gate_proj` …).
extension ModelFamily {
    public static let olmoe = ModelFamily(
        name: "olmoe", modelTypes: ["olmoe"], architectures: ["OlmoeForCausalLM"], ggufArchitectures: ["olmoe"],
        readConfig: { data, path in try OLMoEConfig(json: data, path: path) },
        readGGUF: { try OLMoEConfig(gguf: $0) })
}

/// `config.json` of an OLMoE model: LLaMA's keys, `clip_qkv`, and the experts'.
public struct OLMoEConfig: DecoderConfig, Equatable {
    public var base: LlamaConfig
    public var vocabSize: Int {
        get { base.vocabSize }
        set { base.vocabSize = newValue }
    }
    public var experts: ExpertsSettings

    struct Keys: Decodable {
        var clipQKV: Double?
        var rmsNormEps: Float?
        enum CodingKeys: String, CodingKey { case clipQKV = "clip_qkv", rmsNormEps = "rms_norm_eps" }
    }

    public init(json data: Data, path: String) throws {
        base = try LlamaConfig(json: data, path: path)
        let keys = try LlamaConfig.decode(Keys.self, from: data, path: path)
        if keys.rmsNormEps == nil { base.rmsNormEps = 1e-5 }   // OlmoeConfig's default
        if let c = keys.clipQKV {
            throw ModelError.unsupportedOption(path: path, key: "clip_qkv", value: "\(c)", supported: "null (Finch does not clamp q, k and v)")
        }
        if base.mlpBias { throw ModelError.unsupportedOption(path: path, key: "mlp_bias", value: "true", supported: "false") }
        guard base.headDim * base.numAttentionHeads == base.hiddenSize else {
            throw ModelError.unsupportedOption(path: path, key: "head_dim", value: "\(base.headDim)",
                                               supported: "hidden_size / num_attention_heads (OLMoE's q norm spans hidden_size)")
        }
        experts = try ExpertsSettings(json: data, path: path, layers: base.numHiddenLayers, defaults: ExpertsSettings(
            numExperts: 64, numExpertsPerTok: 8, expertSize: base.intermediateSize, normTopkProb: false, routerAuxLossCoef: 0.01),
            sparseLayerKeys: false)
        // OLMoE's experts are `intermediate_size` wide (it has no moe_intermediate_size key).
        experts.expertSize = base.intermediateSize
    }

    /// A GGUF of llama.cpp's `olmoe`: experts of `feed_forward_length` in every layer, the top-k weights as the
    /// softmax gives them, q/k norms over the whole projections.
    public init(gguf: GGUFFile) throws {
        base = try LlamaConfig.load(gguf: gguf)
        if base.attentionBias { throw ModelError.invalidConfig(path: gguf.path, reason: "attention biases in an olmoe GGUF (OLMoE has none)") }
        experts = try ExpertsSettings(gguf: gguf, arch: "olmoe", expertSize: base.intermediateSize, shared: false, normalized: false)
    }

    public var decoderSpec: DecoderSpec {
        var s = base.layoutSpec(family: "olmoe")
        s.qkNorm = true
        s.qkNormOverProjection = true
        s.moe = experts.spec(layers: base.numHiddenLayers)
        return s
    }

    public var names: DecoderNames {
        var n = DecoderNames.llamaLayout
        n.moe = .qwen
        n.ggufRequiresOutput = true
        return n
    }

    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue {
        let e = experts
        return base.huggingFaceConfigJSON(torchDType: torchDType, tieWordEmbeddings: tieWordEmbeddings).patched(
            set: [("architectures", .array([.string("OlmoeForCausalLM")])), ("model_type", .string("olmoe")),
                  ("clip_qkv", .null), ("attention_bias", .bool(base.attentionBias)),
                  ("num_experts", .int(e.numExperts)), ("num_experts_per_tok", .int(e.numExpertsPerTok)),
                  ("norm_topk_prob", .bool(e.normTopkProb)), ("output_router_logits", .bool(e.outputRouterLogits)),
                  ("router_aux_loss_coef", .double(e.routerAuxLossCoef))],
            remove: ["mlp_bias", "pretraining_tp"])
    }

    public func generationConfigJSON() -> JSONValue { base.generationConfigJSON() }

    /// llama.cpp's `olmoe` (OLMoE-1B-7B's: experts in every layer, not renormalized). Its k norm spans the hidden
    /// size, so grouped-query attention (a k projection narrower than that) cannot be written.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        func refuse(_ what: String) -> Error { ExportError.unsupported(path: path, reason: "\(what): llama.cpp's olmoe architecture does not compute it") }
        if base.numKeyValueHeads != base.numAttentionHeads {
            throw refuse("grouped-query attention (\(base.numKeyValueHeads) key/value heads of \(base.numAttentionHeads); its k norm spans hidden_size)")
        }
        if experts.normTopkProb { throw refuse("norm_topk_prob true (it renormalizes the chosen experts' weights)") }
        return ("olmoe", try base.ggufKeys(arch: "olmoe", path: path) + experts.ggufKeys(arch: "olmoe", sizeKey: false))
    }
}
