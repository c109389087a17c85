import FinchCore
import FinchFormats

extension LlamaConfig {
    /// The `<arch>.*` keys llama.cpp reads for the LLaMA layout.
    func ggufKeys(arch: String, path: String) throws -> [(key: String, value: GGUFValue)] {
        guard hiddenAct == "silu" else {
            throw ExportError.unsupported(path: path, reason: "hidden_act '\(hiddenAct)': llama.cpp's \(arch) architecture uses SiLU")
        }
        if attentionBias || mlpBias {
            throw ExportError.unsupported(path: path, reason: "attention_bias / mlp_bias: llama.cpp's \(arch) architecture would not apply every bias Finch does")
        }
        var m: [(key: String, value: GGUFValue)] = [
            ("\(arch).vocab_size", .uint32(UInt32(vocabSize))),
            ("\(arch).context_length", .uint32(UInt32(maxPositionEmbeddings))),
            ("\(arch).embedding_length", .uint32(UInt32(hiddenSize))),
            ("\(arch).block_count", .uint32(UInt32(numHiddenLayers))),
            ("\(arch).feed_forward_length", .uint32(UInt32(intermediateSize))),
            ("\(arch).rope.dimension_count", .uint32(UInt32(headDim))),
            ("\(arch).attention.head_count", .uint32(UInt32(numAttentionHeads))),
            ("\(arch).attention.head_count_kv", .uint32(UInt32(numKeyValueHeads))),
            ("\(arch).rope.freq_base", .float32(ropeTheta)),
            ("\(arch).attention.layer_norm_rms_epsilon", .float32(rmsNormEps)),
        ]
        if headDim * numAttentionHeads != hiddenSize {
            m += [("\(arch).attention.key_length", .uint32(UInt32(headDim))), ("\(arch).attention.value_length", .uint32(UInt32(headDim)))]
        }
        return m   // scaled rotary frequencies travel as a rope_freqs tensor (see saveGGUF)
    }
}

extension LlamaConfig {
    /// llama.cpp's `llama` architecture and its `llama.*` keys.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        ("llama", try ggufKeys(arch: "llama", path: path))
    }
}
