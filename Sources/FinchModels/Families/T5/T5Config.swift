import FinchCore
import FinchFormats
import Foundation

/// `config.json` of a T5 model (T5, T5 v1.1, Flan-T5; `T5ForConditionalGeneration`), with
/// transformers' `T5Config` defaults.
public struct T5Config: Decodable, Equatable, Sendable {
    public var vocabSize: Int
    public var dModel: Int
    public var dKv: Int
    public var dFf: Int
    public var numLayers: Int
    public var numDecoderLayers: Int?
    public var numHeads: Int
    public var relativeAttentionNumBuckets: Int
    public var relativeAttentionMaxDistance: Int
    public var layerNormEpsilon: Float
    /// `relu`, `gated-gelu` (T5 v1.1 / Flan-T5), `gelu`, `gated-silu`, …
    public var feedForwardProj: String
    /// T5's rescale of the decoder output by d_model^-0.5 before the LM head follows this
    /// (original T5: tied and rescaled; v1.1 / Flan-T5: false, an own `lm_head`, no rescale).
    public var tieWordEmbeddings: Bool
    /// Written by transformers 5, which ties every T5 and keeps the rescale decision here; when
    /// present it decides the rescale instead of `tie_word_embeddings`.
    public var scaleDecoderOutputs: Bool?
    public var decoderStartTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?
    public var dropoutRate: Double
    public var isEncoderDecoder: Bool
    public var isDecoder: Bool

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", dModel = "d_model", dKv = "d_kv", dFf = "d_ff", numLayers = "num_layers"
        case numDecoderLayers = "num_decoder_layers", numHeads = "num_heads"
        case relativeAttentionNumBuckets = "relative_attention_num_buckets"
        case relativeAttentionMaxDistance = "relative_attention_max_distance"
        case layerNormEpsilon = "layer_norm_epsilon", feedForwardProj = "feed_forward_proj"
        case tieWordEmbeddings = "tie_word_embeddings", decoderStartTokenId = "decoder_start_token_id"
        case scaleDecoderOutputs = "scale_decoder_outputs"
        case eosTokenId = "eos_token_id", padTokenId = "pad_token_id", dropoutRate = "dropout_rate"
        case isEncoderDecoder = "is_encoder_decoder", isDecoder = "is_decoder"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func v<T: Decodable>(_ k: CodingKeys, _ d: T) throws -> T { try c.decodeIfPresent(T.self, forKey: k) ?? d }
        vocabSize = try v(.vocabSize, 32128); dModel = try v(.dModel, 512); dKv = try v(.dKv, 64); dFf = try v(.dFf, 2048)
        numLayers = try v(.numLayers, 6); numDecoderLayers = try c.decodeIfPresent(Int.self, forKey: .numDecoderLayers)
        numHeads = try v(.numHeads, 8)
        relativeAttentionNumBuckets = try v(.relativeAttentionNumBuckets, 32)
        relativeAttentionMaxDistance = try v(.relativeAttentionMaxDistance, 128)
        layerNormEpsilon = try v(.layerNormEpsilon, 1e-6); feedForwardProj = try v(.feedForwardProj, "relu")
        tieWordEmbeddings = try v(.tieWordEmbeddings, true)
        scaleDecoderOutputs = try c.decodeIfPresent(Bool.self, forKey: .scaleDecoderOutputs)
        decoderStartTokenId = try c.decodeIfPresent(Int.self, forKey: .decoderStartTokenId)
        eosTokenId = try v(.eosTokenId, 1); padTokenId = try v(.padTokenId, 0)
        dropoutRate = try v(.dropoutRate, 0.1)
        isEncoderDecoder = try v(.isEncoderDecoder, true); isDecoder = try v(.isDecoder, false)
    }

    public init(json data: Data, path: String) throws {
        self = try LlamaConfig.decode(T5Config.self, from: data, path: path)
        try validate(path: path)
    }

    /// Decoder blocks (`num_decoder_layers`, else as many as the encoder's).
    public var decoderLayers: Int { numDecoderLayers ?? numLayers }
    /// H · D: the width of q, k, v and of o's input (T5 allows it to differ from d_model).
    public var innerDim: Int { numHeads * dKv }
    /// Whether the FFN is gated (`wi_0`, `wi_1`, `wo`) or plain (`wi`, `wo`).
    public var isGated: Bool { feedForwardProj.hasPrefix("gated-") }

    /// The FFN's activation, as transformers maps `feed_forward_proj` (`gated-gelu` is gelu_new).
    public var activation: Activation {
        get throws {
            let name = feedForwardProj == "gated-gelu" ? "gelu_new" : String(feedForwardProj.split(separator: "-").last ?? "")
            switch name {
            case "relu": return .relu
            case "gelu_new", "gelu_pytorch_tanh": return .gelu(.tanh)
            case "gelu": return .gelu(.erf)
            case "silu", "swish": return .silu
            default:
                throw ModelError.unsupportedOption(path: "config.json", key: "feed_forward_proj", value: feedForwardProj,
                                                   supported: "relu, gelu, gelu_new, silu, each plain or gated-")
            }
        }
    }

    /// Whether the decoder output is multiplied by d_model^-0.5 before the LM head (original T5).
    public var scalesDecoderOutput: Bool { scaleDecoderOutputs ?? tieWordEmbeddings }

    /// The id the decoder starts from.
    public var startTokenId: Int { decoderStartTokenId ?? 0 }

    public func validate(path: String) throws {
        try ConfigChecks.sizes([("vocab_size", vocabSize), ("d_model", dModel), ("d_kv", dKv), ("d_ff", dFf),
                                ("num_layers", numLayers), ("num_decoder_layers", decoderLayers), ("num_heads", numHeads),
                                ("relative_attention_num_buckets", relativeAttentionNumBuckets),
                                ("relative_attention_max_distance", relativeAttentionMaxDistance)], path: path)
        let parts = feedForwardProj.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count > 2 || (parts.count == 2 && parts[0] != "gated") {
            throw ModelError.unsupportedOption(path: path, key: "feed_forward_proj", value: feedForwardProj,
                                               supported: "relu, gelu, gelu_new, silu, each plain or gated-")
        }
        do { _ = try activation } catch {
            throw ModelError.unsupportedOption(path: path, key: "feed_forward_proj", value: feedForwardProj,
                                               supported: "relu, gelu, gelu_new, silu, each plain or gated-")
        }
        if !isEncoderDecoder || isDecoder {
            throw ModelError.unsupportedOption(path: path, key: isDecoder ? "is_decoder" : "is_encoder_decoder",
                                               value: isDecoder ? "true" : "false",
                                               supported: "the encoder-decoder T5ForConditionalGeneration")
        }
        guard decoderStartTokenId != nil else {
            throw ModelError.invalidConfig(path: path, reason: "there is no decoder_start_token_id (T5 checkpoints set it, usually to 0, the pad id); add it to config.json")
        }
        if relativeAttentionNumBuckets < 4 {
            throw ModelError.invalidConfig(path: path, reason: "relative_attention_num_buckets = \(relativeAttentionNumBuckets) is below 4")
        }
        // The logarithmic buckets span max_exact ..< max_distance (max_exact: a quarter of the buckets
        // in the encoder, half in the decoder); a max_distance not past that has no such span.
        if relativeAttentionMaxDistance <= relativeAttentionNumBuckets / 2 {
            throw ModelError.invalidConfig(path: path, reason: "relative_attention_max_distance (\(relativeAttentionMaxDistance)) must exceed half of relative_attention_num_buckets (\(relativeAttentionNumBuckets))")
        }
    }

    /// What training does differently from transformers' training mode.
    public var trainingCaveats: [String] {
        guard dropoutRate > 0 else { return [] }
        return ["the base model's own dropout (dropout_rate \(dropoutRate)) is not applied: Finch trains the adapter with "
                + "the base in eval mode (transformers would drop out inside T5 too); lora_dropout applies as usual"]
    }

    /// T5's relative position bucket of key position − query position (`relative`): half the
    /// buckets (per direction when `bidirectional`) for exact distances, the rest logarithmic up
    /// to `relative_attention_max_distance`, computed in f32 as transformers does.
    public func bucket(relative: Int, bidirectional: Bool) -> Int {
        var buckets = relativeAttentionNumBuckets
        var result = 0
        var distance: Int
        if bidirectional {
            buckets /= 2
            if relative > 0 { result += buckets }
            distance = abs(relative)
        } else {
            distance = max(0, -relative)
        }
        let maxExact = buckets / 2
        if distance < maxExact { return result + distance }
        let scaled = logf(Float(distance) / Float(maxExact)) / Float(log(Double(relativeAttentionMaxDistance) / Double(maxExact)))
            * Float(buckets - maxExact)
        return result + min(maxExact + Int(min(scaled, Float(buckets))), buckets - 1)
    }
}

extension ModelFamily {
    public static let t5 = ModelFamily(
        name: "t5", kind: .encoderDecoder, modelTypes: ["t5"], architectures: ["T5ForConditionalGeneration"],
        ggufArchitectures: ["t5"],
        loadGGUF: { file, dtype, quantization, keepBlocks in
            guard quantization == nil else {
                throw ModelError.invalidConfig(path: file.path, reason: "a t5 GGUF file loads as stored; leave out --quantize")
            }
            return try T5Model.load(gguf: file, dtype: dtype, keepBlocks: keepBlocks)
        },
        load: { json, path, source, dtype, quantization in
            try T5Model.load(from: source, config: try T5Config(json: json, path: path), dtype: dtype, quantization: quantization)
        })
}
