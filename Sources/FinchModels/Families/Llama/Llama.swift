import FinchCore
import FinchFormats
import Foundation

/// LLaMA 1–3 (Llama 3.x rope scaling), SmolLM and the other checkpoints of `LlamaForCausalLM`.
extension ModelFamily {
    public static let llama = ModelFamily(
        name: "llama", modelTypes: ["llama"], architectures: ["LlamaForCausalLM"], ggufArchitectures: ["llama"],
        readConfig: { data, path in try LlamaConfig(json: data, path: path) },
        readGGUF: { g in
            // llama.cpp stores Mixtral as llama with experts.
            if (g.metadata["llama.expert_count"]?.intValue ?? 0) > 0 { return try MixtralConfig(gguf: g) }
            return try LlamaConfig.load(gguf: g)
        })
}

extension LlamaConfig: DecoderConfig {
    public var decoderSpec: DecoderSpec { layoutSpec(family: "llama") }

    public var names: DecoderNames {
        var n = DecoderNames.llamaLayout
        n.ggufPermutesQK = true   // llama.cpp's LLaMA converter interleaves q / k rows
        return n
    }

    /// PEFT's default for LLaMA: q_proj, v_proj.
    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings tie: Bool) -> JSONValue {
        var c = self
        c.tieWordEmbeddings = tie
        return c.huggingFaceConfigJSON(torchDType: torchDType)
    }

    /// The spec of a model in the LLaMA layout (`family` names it): RMSNorm, SwiGLU, biases on
    /// q / k / v / o with `attention_bias` and on the MLP with `mlp_bias`.
    func layoutSpec(family: String) -> DecoderSpec {
        var s = DecoderSpec(family: family, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                            numLayers: numHiddenLayers, numHeads: numAttentionHeads, numKVHeads: numKeyValueHeads,
                            headDim: headDim, vocabSize: vocabSize, maxPositions: maxPositionEmbeddings,
                            bosTokenId: bosTokenId, eosTokenIds: eosTokenIds, tieWordEmbeddings: tieWordEmbeddings,
                            norm: .rms(eps: rmsNormEps), mlp: .swiGLU, rope: rope)
        s.qkvBias = attentionBias; s.outputBias = attentionBias; s.mlpBias = mlpBias
        return s
    }
}
