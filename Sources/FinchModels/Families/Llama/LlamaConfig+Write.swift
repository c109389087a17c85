import FinchFormats

/// Hugging Face `config.json` / `generation_config.json` documents for a LLaMA-family config,
/// as transformers writes them for `LlamaForCausalLM` (keys sorted; both `torch_dtype` (≤ 4.x)
/// and `dtype` (≥ 5), and the classic `rope_theta` + `rope_scaling`, which both read).
extension LlamaConfig {
    /// The `config.json` document; `torchDType` is `"float32"`, `"bfloat16"` or `"float16"`.
    ///
    /// Floats are written as their shortest decimal (`1e-05`, not `9.99999974737875e-06`), so
    /// Python reads the value the checkpoint was made with; `LlamaConfig.load(configJSON:)` reads
    /// the document back to an equal config.
    public func huggingFaceConfigJSON(torchDType: String) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string("LlamaForCausalLM")])),
            ("attention_bias", .bool(attentionBias)),
            ("attention_dropout", .number("0.0")),
            ("bos_token_id", bosTokenId.map { .number(String($0)) } ?? .null),
            ("dtype", .string(torchDType)),
            ("eos_token_id", eosJSON),
            ("head_dim", int(headDim)),
            ("hidden_act", .string("silu")),
            ("hidden_size", int(hiddenSize)),
            ("initializer_range", .number("0.02")),
            ("intermediate_size", int(intermediateSize)),
            ("max_position_embeddings", int(maxPositionEmbeddings)),
            ("mlp_bias", .bool(mlpBias)),
            ("model_type", .string("llama")),
            ("num_attention_heads", int(numAttentionHeads)),
            ("num_hidden_layers", int(numHiddenLayers)),
            ("num_key_value_heads", int(numKeyValueHeads)),
            ("pretraining_tp", .number("1")),
            ("rms_norm_eps", float(rmsNormEps)),
            ("rope_scaling", ropeScaling.map(Self.scalingJSON) ?? .null),
            ("rope_theta", float(ropeTheta)),
            ("tie_word_embeddings", .bool(tieWordEmbeddings)),
            ("torch_dtype", .string(torchDType)),
            ("use_cache", .bool(true)),
            ("vocab_size", int(vocabSize)),
        ]
        m.sort { $0.key < $1.key }
        return .object(m)
    }

    /// The `generation_config.json` document: the special token ids generation stops and starts with.
    public func generationConfigJSON() -> JSONValue {
        ConfigChecks.generationConfigJSON(bos: bosTokenId, eos: eosTokenIds)
    }

    /// `eos_token_id`: one id as a number, several as a list (as transformers writes it).
    private var eosJSON: JSONValue {
        switch eosTokenIds.count {
        case 0: return .null
        case 1: return int(eosTokenIds[0])
        default: return .array(eosTokenIds.map(int))
        }
    }

    /// The `rope_scaling` object, with only the fields the config has.
    private static func scalingJSON(_ s: RoPEScalingConfig) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        if let f = s.factor { m.append(("factor", float(f))) }
        if let h = s.highFreqFactor { m.append(("high_freq_factor", float(h))) }
        if let l = s.lowFreqFactor { m.append(("low_freq_factor", float(l))) }
        if let o = s.originalMaxPositionEmbeddings { m.append(("original_max_position_embeddings", int(o))) }
        if let t = s.ropeTheta { m.append(("rope_theta", float(t))) }
        if let t = s.ropeType { m.append(("rope_type", .string(t))) }
        return .object(m)
    }
}

private func int(_ v: Int) -> JSONValue { .number(String(v)) }

/// A Float as its shortest round-tripping decimal, always with a fraction or exponent (`8.0`, `1e-05`).
private func float(_ v: Float) -> JSONValue {
    var s = "\(v)"
    if !s.contains(".") && !s.contains("e") && v.isFinite { s += ".0" }
    return .number(v.isFinite ? s : (v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf")))
}
