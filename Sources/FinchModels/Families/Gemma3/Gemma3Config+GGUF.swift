import FinchCore
import FinchFormats

extension Gemma3Config {
    /// The `gemma3.*` keys llama.cpp reads. llama.cpp fixes what the file cannot say — every sixth
    /// layer global, the others sliding with rotary base 10000, attention scaled by 1/√head_dim
    /// (27B: 1/√(hidden/heads)) — so a model that differs is refused by name.
    func ggufKeys(path: String) throws -> [(key: String, value: GGUFValue)] {
        func refuse(_ what: String) -> ExportError {
            .unsupported(path: path, reason: "\(what), which llama.cpp's gemma3 architecture fixes otherwise")
        }
        let pattern = (0..<numHiddenLayers).map { ($0 + 1) % 6 != 0 ? "sliding_attention" : "full_attention" }
        if layerTypes != pattern { throw refuse("layer_types is not every sixth layer global") }
        if localRopeTheta != 10_000 { throw refuse("the sliding layers' rotary base is \(localRopeTheta) (not 10000)") }
        let scale = numHiddenLayers == 62 ? Float(hiddenSize / numAttentionHeads) : Float(headDim)
        if queryPreAttnScalar != scale { throw refuse("query_pre_attn_scalar is \(queryPreAttnScalar) (not \(scale))") }
        if attentionBias { throw refuse("attention_bias is set") }
        var m: [(key: String, value: GGUFValue)] = [
            ("gemma3.context_length", .uint32(UInt32(maxPositionEmbeddings))),
            ("gemma3.embedding_length", .uint32(UInt32(hiddenSize))),
            ("gemma3.block_count", .uint32(UInt32(numHiddenLayers))),
            ("gemma3.feed_forward_length", .uint32(UInt32(intermediateSize))),
            ("gemma3.attention.head_count", .uint32(UInt32(numAttentionHeads))),
            ("gemma3.attention.head_count_kv", .uint32(UInt32(numKeyValueHeads))),
            ("gemma3.attention.key_length", .uint32(UInt32(headDim))),
            ("gemma3.attention.value_length", .uint32(UInt32(headDim))),
            ("gemma3.attention.layer_norm_rms_epsilon", .float32(rmsNormEps)),
            ("gemma3.rope.freq_base", .float32(globalRope.ropeTheta ?? 1_000_000)),
            ("gemma3.attention.sliding_window", .uint32(UInt32(slidingWindow ?? 4096))),
        ]
        if globalRope.ropeType == "linear", let f = globalRope.factor {
            m += [("gemma3.rope.scaling.type", .string("linear")), ("gemma3.rope.scaling.factor", .float32(f))]
        }
        return m
    }
}

extension Gemma3Config {
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        ("gemma3", try ggufKeys(path: path))
    }
}
