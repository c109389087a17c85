import FinchCore
import FinchFormats
import Foundation

/// Gemma 3 text models (`Gemma3ForCausalLM`, `model_type: gemma3_text`; llama.cpp's `gemma3`):
/// RMSNorms that multiply by 1 + w, sandwich norms around attention and the MLP, q/k norms,
/// a gated GELU (tanh) MLP, embeddings scaled by √hidden, attention scaled by
/// `query_pre_attn_scalar`^-½, and sliding-window layers (rotary base `rope_local_base_freq`)
/// between full-attention ones (base `rope_theta`, with its scaling).
extension ModelFamily {
    public static let gemma3 = ModelFamily(
        name: "gemma3", modelTypes: ["gemma3_text"], architectures: ["Gemma3ForCausalLM"], ggufArchitectures: ["gemma3"],
        readConfig: { data, path in try Gemma3Config(json: data, path: path) },
        readGGUF: { try Gemma3Config(gguf: $0) })
}

/// `config.json` of a Gemma 3 text model, with transformers' `Gemma3TextConfig` defaults.
public struct Gemma3Config: DecoderConfig, Decodable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Float
    public var hiddenActivation: String
    public var queryPreAttnScalar: Float
    public var slidingWindow: Int?
    public var layerTypes: [String]
    /// Rotary base and scaling of the full-attention layers, and the base of the sliding ones.
    public var globalRope: LlamaConfig.RoPEScalingConfig
    public var localRopeTheta: Float
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case vocabSize = "vocab_size", maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case hiddenActivation = "hidden_activation", hiddenAct = "hidden_act"
        case queryPreAttnScalar = "query_pre_attn_scalar", slidingWindow = "sliding_window", layerTypes = "layer_types"
        case slidingWindowPattern = "sliding_window_pattern"
        case ropeParameters = "rope_parameters", ropeScaling = "rope_scaling", ropeTheta = "rope_theta"
        case ropeLocalBaseFreq = "rope_local_base_freq"
        case tieWordEmbeddings = "tie_word_embeddings", attentionBias = "attention_bias"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id"
        case finalLogitSoftcapping = "final_logit_softcapping", attnLogitSoftcapping = "attn_logit_softcapping"
        case useBidirectionalAttention = "use_bidirectional_attention"
        case architectures, modelType = "model_type", torchDType = "torch_dtype", dtype
    }

    /// An option Finch refuses, found while decoding and thrown by `validate`: key, value, what is supported.
    private var refused: [String] = []

    public init(json data: Data, path: String) throws {
        self = try LlamaConfig.decode(Gemma3Config.self, from: data, path: path)
        try validate(path: path)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 4
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? 256
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 262_208
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 131_072
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation)
            ?? c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu_pytorch_tanh"
        queryPreAttnScalar = try c.decodeIfPresent(Float.self, forKey: .queryPreAttnScalar) ?? 256
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 4096
        let pattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern) ?? 6
        let layers = numHiddenLayers
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? (0..<layers).map { ($0 + 1) % max(pattern, 1) != 0 ? "sliding_attention" : "full_attention" }
        // transformers ≥ 5: rope_parameters {full_attention: {...}, sliding_attention: {...}};
        // older: rope_theta + rope_scaling (global) and rope_local_base_freq.
        struct PerType: Decodable {
            let full: LlamaConfig.RoPEScalingConfig?, sliding: LlamaConfig.RoPEScalingConfig?
            enum CodingKeys: String, CodingKey { case full = "full_attention", sliding = "sliding_attention" }
        }
        let perType = try? c.decodeIfPresent(PerType.self, forKey: .ropeParameters)
        var global = try perType?.full ?? c.decodeIfPresent(LlamaConfig.RoPEScalingConfig.self, forKey: .ropeScaling)
            ?? LlamaConfig.RoPEScalingConfig(ropeType: "default", factor: nil)
        if global.ropeTheta == nil { global.ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 1_000_000 }
        if global.ropeType == nil { global.ropeType = "default" }
        globalRope = global
        localRopeTheta = try perType?.sliding?.ropeTheta ?? c.decodeIfPresent(Float.self, forKey: .ropeLocalBaseFreq) ?? 10_000
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? 2
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) { eosTokenIds = [one] } else {
            eosTokenIds = try c.decodeIfPresent([Int].self, forKey: .eosTokenId) ?? [1]
        }
        padTokenId = try? c.decodeIfPresent(Int.self, forKey: .padTokenId)
        if let cap = try c.decodeIfPresent(Float.self, forKey: .finalLogitSoftcapping) {
            refused = ["final_logit_softcapping", "\(cap)", "null"]
        }
        if let cap = try c.decodeIfPresent(Float.self, forKey: .attnLogitSoftcapping) {
            refused = ["attn_logit_softcapping", "\(cap)", "null"]
        }
        if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
            refused = ["use_bidirectional_attention", "true", "false (causal attention)"]
        }
        if let s = perType?.sliding, let t = s.ropeType, t != "default" {
            refused = ["rope_parameters.sliding_attention.rope_type", t, "default"]
        }
    }

    /// A GGUF of llama.cpp's `gemma3` architecture, read as transformers reads it (Gemma3TextConfig
    /// defaults for what the file does not say).
    public init(gguf: GGUFFile) throws {
        let m = gguf.metadata
        func int(_ k: String) throws -> Int { try gguf.requiredInt("gemma3.\(k)") }
        hiddenSize = try int("embedding_length")
        intermediateSize = try int("feed_forward_length")
        numHiddenLayers = try int("block_count")
        numAttentionHeads = try int("attention.head_count")
        numKeyValueHeads = m["gemma3.attention.head_count_kv"]?.intValue ?? numAttentionHeads
        headDim = m["gemma3.attention.key_length"]?.intValue ?? 256
        vocabSize = m["gemma3.vocab_size"]?.intValue ?? m["tokenizer.ggml.tokens"]?.arrayValue?.count ?? 0
        maxPositionEmbeddings = m["gemma3.context_length"]?.intValue ?? 131_072
        rmsNormEps = Float(m["gemma3.attention.layer_norm_rms_epsilon"]?.doubleValue ?? 1e-6)
        hiddenActivation = "gelu_pytorch_tanh"
        queryPreAttnScalar = 256
        slidingWindow = m["gemma3.attention.sliding_window"]?.intValue ?? 4096
        let layers = numHiddenLayers
        layerTypes = (0..<layers).map { ($0 + 1) % 6 != 0 ? "sliding_attention" : "full_attention" }
        var global = LlamaConfig.RoPEScalingConfig(ropeType: "default", factor: nil)
        global.ropeTheta = Float(m["gemma3.rope.freq_base"]?.doubleValue ?? 1_000_000)
        if let type = m["gemma3.rope.scaling.type"]?.stringValue, type != "none" {
            global.ropeType = type
            global.factor = m["gemma3.rope.scaling.factor"]?.doubleValue.map { Float($0) }
        }
        globalRope = global
        localRopeTheta = 10_000
        tieWordEmbeddings = gguf.tensor(named: "output.weight") == nil
        attentionBias = false
        bosTokenId = m["tokenizer.ggml.bos_token_id"]?.intValue ?? 2
        eosTokenIds = [m["tokenizer.ggml.eos_token_id"]?.intValue ?? 1]
        // A turn ends generation too, as Gemma's generation_config ([1, 106]) and llama.cpp have it.
        if let turnEnd = m["tokenizer.ggml.tokens"]?.stringArray?.firstIndex(of: "<end_of_turn>"), !eosTokenIds.contains(turnEnd) {
            eosTokenIds.append(turnEnd)
        }
        padTokenId = m["tokenizer.ggml.padding_token_id"]?.intValue
        try validate(path: gguf.path)
    }

    public func validate(path: String) throws {
        func fail(_ r: String) -> ModelError { .invalidConfig(path: path, reason: r) }
        if refused.count == 3 { throw ModelError.unsupportedOption(path: path, key: refused[0], value: refused[1], supported: refused[2]) }
        try ConfigChecks.sizes([("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                                ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                                ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim), ("vocab_size", vocabSize)],
                               path: path)
        try ConfigChecks.heads(numAttentionHeads, kvHeads: numKeyValueHeads, headDim: headDim, path: path)
        if !["gelu_pytorch_tanh", "gelu_new"].contains(hiddenActivation) {
            throw ModelError.unsupportedOption(path: path, key: "hidden_activation", value: hiddenActivation,
                                               supported: "gelu_pytorch_tanh")
        }
        if let t = globalRope.ropeType, !["default", "linear"].contains(t) {
            throw ModelError.unsupportedOption(path: path, key: "rope_parameters.full_attention.rope_type", value: t,
                                               supported: "default, linear")
        }
        guard layerTypes.count == numHiddenLayers else {
            throw fail("layer_types has \(layerTypes.count) entries for \(numHiddenLayers) layers")
        }
        for t in layerTypes where !["full_attention", "sliding_attention"].contains(t) {
            throw ModelError.unsupportedOption(path: path, key: "layer_types", value: t, supported: "full_attention, sliding_attention")
        }
        if layerTypes.contains("sliding_attention"), (slidingWindow ?? 0) <= 0 {
            throw fail("sliding layers need a positive sliding_window")
        }
        if !(queryPreAttnScalar > 0) { throw fail("query_pre_attn_scalar must be positive") }
    }

    public var decoderSpec: DecoderSpec {
        var global = RoPE(headDim: headDim, theta: globalRope.ropeTheta ?? 1_000_000)
        if globalRope.ropeType == "linear" {
            global = RoPE(headDim: headDim, theta: globalRope.ropeTheta ?? 1_000_000, scaling: .linear(factor: globalRope.factor ?? 1))
        }
        let local = RoPE(headDim: headDim, theta: localRopeTheta)
        var s = DecoderSpec(family: "gemma3", hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                            numLayers: numHiddenLayers, numHeads: numAttentionHeads, numKVHeads: numKeyValueHeads,
                            headDim: headDim, vocabSize: vocabSize, maxPositions: maxPositionEmbeddings,
                            bosTokenId: bosTokenId, eosTokenIds: eosTokenIds, tieWordEmbeddings: tieWordEmbeddings,
                            norm: .rms(eps: rmsNormEps), mlp: .geGLU, rope: global,
                            attentionScale: 1 / queryPreAttnScalar.squareRoot())
        s.ropes = layerTypes.map { $0 == "sliding_attention" ? local : global }
        s.slidingWindows = layerTypes.map { $0 == "sliding_attention" ? slidingWindow : nil }
        s.qkNorm = true
        s.sandwichNorms = true
        s.normWeightOffset = 1
        s.embeddingScale = Float(Double(hiddenSize).squareRoot())
        s.qkvBias = attentionBias; s.outputBias = attentionBias
        return s
    }

    public var names: DecoderNames {
        var n = DecoderNames.llamaLayout
        n.norms = [.attention: ("input_layernorm", "attn_norm"), .postAttention: ("post_attention_layernorm", "post_attention_norm"),
                   .mlp: ("pre_feedforward_layernorm", "ffn_norm"), .postMLP: ("post_feedforward_layernorm", "post_ffw_norm"),
                   .q: ("self_attn.q_norm", "attn_q_norm"), .k: ("self_attn.k_norm", "attn_k_norm")]
        n.ggufNormShift = 1   // llama.cpp's Gemma converter stores 1 + w
        return n
    }

    /// PEFT's default for Gemma 3: q_proj, v_proj.
    public var defaultTargetModules: [String] { ["q_proj", "v_proj"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings tie: Bool) -> JSONValue {
        func int(_ v: Int) -> JSONValue { .number(String(v)) }
        func float(_ v: Float) -> JSONValue { var s = "\(v)"; if !s.contains(".") && !s.contains("e") { s += ".0" }; return .number(s) }
        var global: [(key: String, value: JSONValue)] = [("rope_theta", float(globalRope.ropeTheta ?? 1_000_000)),
                                                         ("rope_type", .string(globalRope.ropeType ?? "default"))]
        if let f = globalRope.factor { global.insert(("factor", float(f)), at: 0) }
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string("Gemma3ForCausalLM")])),
            ("attention_bias", .bool(attentionBias)),
            ("attention_dropout", .number("0.0")),
            ("attn_logit_softcapping", .null),
            ("bos_token_id", bosTokenId.map(int) ?? .null),
            ("dtype", .string(torchDType)),
            ("eos_token_id", eosTokenIds.count == 1 ? int(eosTokenIds[0]) : .array(eosTokenIds.map(int))),
            ("final_logit_softcapping", .null),
            ("head_dim", int(headDim)),
            ("hidden_activation", .string(hiddenActivation)),
            ("hidden_size", int(hiddenSize)),
            ("initializer_range", .number("0.02")),
            ("intermediate_size", int(intermediateSize)),
            ("layer_types", .array(layerTypes.map { .string($0) })),
            ("max_position_embeddings", int(maxPositionEmbeddings)),
            ("model_type", .string("gemma3_text")),
            ("num_attention_heads", int(numAttentionHeads)),
            ("num_hidden_layers", int(numHiddenLayers)),
            ("num_key_value_heads", int(numKeyValueHeads)),
            ("pad_token_id", padTokenId.map(int) ?? .null),
            ("query_pre_attn_scalar", float(queryPreAttnScalar)),
            ("rms_norm_eps", float(rmsNormEps)),
            ("rope_parameters", .object([("full_attention", .object(global)),
                                         ("sliding_attention", .object([("rope_theta", float(localRopeTheta)),
                                                                        ("rope_type", .string("default"))]))])),
            ("sliding_window", slidingWindow.map(int) ?? .null),
            ("tie_word_embeddings", .bool(tie)),
            ("torch_dtype", .string(torchDType)),
            ("use_bidirectional_attention", .bool(false)),
            ("use_cache", .bool(true)),
            ("vocab_size", int(vocabSize)),
        ]
        m.sort { $0.key < $1.key }
        return .object(m)
    }

    public func generationConfigJSON() -> JSONValue {
        ConfigChecks.generationConfigJSON(bos: bosTokenId, eos: eosTokenIds, pad: padTokenId)
    }
}
