import FinchCore
import FinchFormats
import Foundation

/// Configuration of a LLaMA-family model, with the keys of Hugging Face's `config.json`.
public struct LlamaConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var ropeScaling: RoPEScalingConfig?
    public var tieWordEmbeddings: Bool
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var attentionBias: Bool
    public var mlpBias: Bool
    /// The MLP's activation (`hidden_act`); Finch implements `silu`.
    public var hiddenAct: String

    /// `rope_scaling` / `rope_parameters` of a config.
    public struct RoPEScalingConfig: Codable, Sendable, Equatable {
        public var ropeType: String?
        public var factor: Float?
        public var lowFreqFactor: Float?
        public var highFreqFactor: Float?
        public var originalMaxPositionEmbeddings: Int?
        public var ropeTheta: Float?

        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, factor
            case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
            case ropeTheta = "rope_theta"
        }

        public init(ropeType: String?, factor: Float?, lowFreqFactor: Float? = nil, highFreqFactor: Float? = nil,
                    originalMaxPositionEmbeddings: Int? = nil, ropeTheta: Float? = nil) {
            self.ropeType = ropeType; self.factor = factor; self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor; self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
            self.ropeTheta = ropeTheta
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            ropeType = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type)
            factor = try c.decodeIfPresent(Float.self, forKey: .factor)
            lowFreqFactor = try c.decodeIfPresent(Float.self, forKey: .lowFreqFactor)
            highFreqFactor = try c.decodeIfPresent(Float.self, forKey: .highFreqFactor)
            originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
            ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(ropeType, forKey: .ropeType)
            try c.encodeIfPresent(factor, forKey: .factor)
            try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
            try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
            try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
            try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
        }
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", ropeParameters = "rope_parameters"
        case tieWordEmbeddings = "tie_word_embeddings", vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings", bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id", attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case architectures, modelType = "model_type", hiddenAct = "hidden_act"
    }

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-6, ropeTheta: Float = 10000,
                ropeScaling: RoPEScalingConfig? = nil, tieWordEmbeddings: Bool = false, vocabSize: Int,
                maxPositionEmbeddings: Int = 2048, bosTokenId: Int? = nil, eosTokenIds: [Int] = [],
                attentionBias: Bool = false, mlpBias: Bool = false, hiddenAct: String = "silu") {
        self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim ?? hiddenSize / numAttentionHeads
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings; self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds; self.attentionBias = attentionBias; self.mlpBias = mlpBias
        self.hiddenAct = hiddenAct
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / max(numAttentionHeads, 1)
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6
        // transformers ≥ 5 writes rope_parameters {rope_theta, rope_type, ...}; older configs rope_theta + rope_scaling.
        let params = try c.decodeIfPresent(RoPEScalingConfig.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? params?.ropeTheta ?? 10000
        var scaling = try c.decodeIfPresent(RoPEScalingConfig.self, forKey: .ropeScaling) ?? params
        if let s = scaling, s.ropeType == nil || s.ropeType == "default" { scaling = nil }
        ropeScaling = scaling
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenIds = [one]
        } else {
            eosTokenIds = try c.decodeIfPresent([Int].self, forKey: .eosTokenId) ?? []
        }
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(["LlamaForCausalLM"], forKey: .architectures)
        try c.encode("llama", forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(ropeScaling, forKey: .ropeScaling)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        if eosTokenIds.count == 1 { try c.encode(eosTokenIds[0], forKey: .eosTokenId) }
        else if !eosTokenIds.isEmpty { try c.encode(eosTokenIds, forKey: .eosTokenId) }
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias)
        try c.encode(hiddenAct, forKey: .hiddenAct)
    }

    /// Throws when the numbers cannot describe a working model.
    public func validate(path: String) throws {
        func fail(_ r: String) -> ModelError { .invalidConfig(path: path, reason: r) }
        try ConfigChecks.sizes([("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                                ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                                ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim), ("vocab_size", vocabSize)],
                               path: path)
        try ConfigChecks.heads(numAttentionHeads, kvHeads: numKeyValueHeads, headDim: headDim, path: path)
        if !(rmsNormEps > 0) { throw fail("rms_norm_eps must be positive") }
        if !(ropeTheta > 0) { throw fail("rope_theta must be positive") }
        if hiddenAct != "silu" {
            throw ModelError.unsupportedOption(path: path, key: "hidden_act", value: hiddenAct, supported: "silu")
        }
        if let s = ropeScaling, let t = s.ropeType, !["linear", "llama3"].contains(t) {
            throw ModelError.unsupportedOption(path: path, key: "rope_scaling.rope_type", value: t,
                                               supported: "default, linear, llama3")
        }
    }

    /// The rotary embedding this config describes.
    public var rope: RoPE {
        var scaling = RoPE.Scaling.none
        if let s = ropeScaling {
            switch s.ropeType {
            case "linear": scaling = .linear(factor: s.factor ?? 1)
            case "llama3":
                scaling = .llama3(factor: s.factor ?? 8, lowFreqFactor: s.lowFreqFactor ?? 1,
                                  highFreqFactor: s.highFreqFactor ?? 4,
                                  originalMaxPositions: s.originalMaxPositionEmbeddings ?? 8192)
            default: break
            }
        }
        return RoPE(headDim: headDim, theta: ropeTheta, scaling: scaling)
    }

    /// Reads `config.json` (the families of the LLaMA layout decode their common keys with this).
    public static func load(configJSON path: String) throws -> LlamaConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.notFound(path: path, hint: "An HF-layout model directory needs config.json.")
        }
        return try LlamaConfig(json: data, path: path)
    }

    /// Decodes and validates `config.json` bytes (`path` names the file in errors).
    public init(json data: Data, path: String) throws {
        self = try Self.decode(LlamaConfig.self, from: data, path: path)
        try validate(path: path)
    }

    /// Decodes a config type from `config.json` bytes, with the path in the error.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw ModelError.invalidConfig(path: path, reason: "\(error)")
        }
    }

    /// Reads the `<arch>.*` keys of a GGUF file, `arch` being its `general.architecture`
    /// (the families of the LLaMA layout share them).
    public static func load(gguf: GGUFFile) throws -> LlamaConfig {
        let m = gguf.metadata
        let arch = m["general.architecture"]?.stringValue ?? "?"
        func int(_ k: String) throws -> Int { try gguf.requiredInt("\(arch).\(k)") }
        let heads = try int("attention.head_count")
        let hidden = try int("embedding_length")
        let vocab = m["\(arch).vocab_size"]?.intValue ?? m["tokenizer.ggml.tokens"]?.arrayValue?.count ?? 0
        var scaling: RoPEScalingConfig?
        if let type = m["\(arch).rope.scaling.type"]?.stringValue, type != "none" {
            scaling = RoPEScalingConfig(ropeType: type, factor: m["\(arch).rope.scaling.factor"]?.doubleValue.map { Float($0) })
        }
        var eos: [Int] = []
        if let e = m["tokenizer.ggml.eos_token_id"]?.intValue { eos = [e] }
        let cfg = LlamaConfig(
            hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            numHiddenLayers: try int("block_count"), numAttentionHeads: heads,
            numKeyValueHeads: m["\(arch).attention.head_count_kv"]?.intValue ?? heads,
            headDim: m["\(arch).attention.key_length"]?.intValue ?? m["\(arch).rope.dimension_count"]?.intValue ?? hidden / max(heads, 1),
            rmsNormEps: Float(m["\(arch).attention.layer_norm_rms_epsilon"]?.doubleValue ?? 1e-5),
            ropeTheta: Float(m["\(arch).rope.freq_base"]?.doubleValue ?? 10000),
            ropeScaling: scaling,
            tieWordEmbeddings: gguf.tensor(named: "output.weight") == nil,
            vocabSize: vocab, maxPositionEmbeddings: m["\(arch).context_length"]?.intValue ?? 2048,
            bosTokenId: m["tokenizer.ggml.bos_token_id"]?.intValue, eosTokenIds: eos,
            attentionBias: gguf.tensor(named: "blk.0.attn_q.bias") != nil,
            mlpBias: gguf.tensor(named: "blk.0.ffn_up.bias") != nil)
        try cfg.validate(path: gguf.path)
        return cfg
    }
}
