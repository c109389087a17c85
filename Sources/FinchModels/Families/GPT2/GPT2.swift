import FinchCore
import FinchFormats
import Foundation

/// GPT-2 (`GPT2LMHeadModel`): LayerNorm with biases, learned absolute positions, one fused q/k/v
/// product (`c_attn`), a plain GELU (tanh, `gelu_new`) MLP, biases on every product, and Conv1D
/// weights stored [in, out] (PEFT's `fan_in_fan_out`), transposed on load and back on export.
extension ModelFamily {
    public static let gpt2 = ModelFamily(
        name: "gpt2", modelTypes: ["gpt2"], architectures: ["GPT2LMHeadModel"], ggufArchitectures: ["gpt2"],
        readConfig: { data, path in try GPT2Config(json: data, path: path) },
        readGGUF: { try GPT2Config(gguf: $0) })
}

/// `config.json` of a GPT-2 model, with transformers' `GPT2Config` defaults.
public struct GPT2Config: DecoderConfig, Decodable, Equatable {
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    public var nPositions: Int
    public var nInner: Int?
    public var vocabSize: Int
    public var layerNormEpsilon: Float
    public var activationFunction: String
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var scaleAttnWeights: Bool
    public var scaleAttnByInverseLayerIdx: Bool
    public var addCrossAttention: Bool
    /// `resid_pdrop`, `embd_pdrop`, `attn_pdrop` (the base model's own dropout in training).
    public var residPdrop: Double, embdPdrop: Double, attnPdrop: Double

    enum CodingKeys: String, CodingKey {
        case nEmbd = "n_embd", nLayer = "n_layer", nHead = "n_head", nPositions = "n_positions", nInner = "n_inner"
        case vocabSize = "vocab_size", layerNormEpsilon = "layer_norm_epsilon", activationFunction = "activation_function"
        case tieWordEmbeddings = "tie_word_embeddings", bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
        case scaleAttnWeights = "scale_attn_weights", scaleAttnByInverseLayerIdx = "scale_attn_by_inverse_layer_idx"
        case addCrossAttention = "add_cross_attention"
        case residPdrop = "resid_pdrop", embdPdrop = "embd_pdrop", attnPdrop = "attn_pdrop"
    }

    public init(json data: Data, path: String) throws {
        self = try LlamaConfig.decode(GPT2Config.self, from: data, path: path)
        try validate(path: path)
    }

    /// A GGUF of llama.cpp's `gpt2` architecture (GELU with the tanh approximation, as ggml computes it).
    public init(gguf: GGUFFile) throws {
        let m = gguf.metadata
        func int(_ k: String) throws -> Int { try gguf.requiredInt("gpt2.\(k)") }
        let embd = try int("embedding_length")
        var o: [(key: String, value: JSONValue)] = [
            ("n_embd", .int(embd)), ("n_layer", .int(try int("block_count"))), ("n_head", .int(try int("attention.head_count"))),
            ("n_positions", .int(try int("context_length"))), ("n_inner", .int(try int("feed_forward_length"))),
            ("vocab_size", .int(m["gpt2.vocab_size"]?.intValue ?? m["tokenizer.ggml.tokens"]?.arrayValue?.count ?? 0)),
            ("layer_norm_epsilon", .double(m["gpt2.attention.layer_norm_epsilon"]?.doubleValue ?? 1e-5)),
            ("tie_word_embeddings", .bool(gguf.tensor(named: "output.weight") == nil)),
            ("resid_pdrop", .int(0)), ("embd_pdrop", .int(0)), ("attn_pdrop", .int(0)),
        ]
        if let b = m["tokenizer.ggml.bos_token_id"]?.intValue { o.append(("bos_token_id", .int(b))) }
        if let e = m["tokenizer.ggml.eos_token_id"]?.intValue { o.append(("eos_token_id", .int(e))) }
        try self.init(json: Data(JSONValue.object(o).serialized().utf8), path: gguf.path)
    }

    /// The `gpt2.*` keys llama.cpp reads; it computes GELU with the tanh approximation only.
    func ggufKeys(path: String) throws -> [(key: String, value: GGUFValue)] {
        if activationFunction == "gelu" {
            throw ExportError.unsupported(path: path, reason: "activation_function 'gelu' (erf): llama.cpp's gpt2 architecture computes the tanh approximation")
        }
        return [
            ("gpt2.context_length", .uint32(UInt32(nPositions))),
            ("gpt2.embedding_length", .uint32(UInt32(nEmbd))),
            ("gpt2.feed_forward_length", .uint32(UInt32(nInner ?? 4 * nEmbd))),
            ("gpt2.block_count", .uint32(UInt32(nLayer))),
            ("gpt2.attention.head_count", .uint32(UInt32(nHead))),
            ("gpt2.attention.layer_norm_epsilon", .float32(layerNormEpsilon)),
        ]
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? 768
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? 12
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? 12
        nPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? 1024
        nInner = try c.decodeIfPresent(Int.self, forKey: .nInner)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50257
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? 1e-5
        activationFunction = try c.decodeIfPresent(String.self, forKey: .activationFunction) ?? "gelu_new"
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? 50256
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? 50256
        scaleAttnWeights = try c.decodeIfPresent(Bool.self, forKey: .scaleAttnWeights) ?? true
        scaleAttnByInverseLayerIdx = try c.decodeIfPresent(Bool.self, forKey: .scaleAttnByInverseLayerIdx) ?? false
        addCrossAttention = try c.decodeIfPresent(Bool.self, forKey: .addCrossAttention) ?? false
        residPdrop = try c.decodeIfPresent(Double.self, forKey: .residPdrop) ?? 0.1
        embdPdrop = try c.decodeIfPresent(Double.self, forKey: .embdPdrop) ?? 0.1
        attnPdrop = try c.decodeIfPresent(Double.self, forKey: .attnPdrop) ?? 0.1
    }

    public var trainingCaveats: [String] {
        guard residPdrop > 0 || embdPdrop > 0 || attnPdrop > 0 else { return [] }
        return ["the base model's own dropout (resid_pdrop \(residPdrop), embd_pdrop \(embdPdrop), attn_pdrop \(attnPdrop)) "
                + "is not applied: Finch trains the adapter with the base in eval mode (transformers would drop out "
                + "inside GPT-2 too); lora_dropout applies as usual"]
    }

    public func validate(path: String) throws {
        try ConfigChecks.sizes([("n_embd", nEmbd), ("n_layer", nLayer), ("n_head", nHead), ("n_positions", nPositions),
                                ("vocab_size", vocabSize)], path: path)
        if nEmbd % nHead != 0 {
            throw ModelError.invalidConfig(path: path, reason: "n_embd (\(nEmbd)) must be a multiple of n_head (\(nHead))")
        }
        if !["gelu_new", "gelu_pytorch_tanh", "gelu"].contains(activationFunction) {
            throw ModelError.unsupportedOption(path: path, key: "activation_function", value: activationFunction,
                                               supported: "gelu_new, gelu_pytorch_tanh (tanh approximation), gelu (erf)")
        }
        if scaleAttnByInverseLayerIdx {
            throw ModelError.unsupportedOption(path: path, key: "scale_attn_by_inverse_layer_idx", value: "true", supported: "false")
        }
        if !scaleAttnWeights {
            throw ModelError.unsupportedOption(path: path, key: "scale_attn_weights", value: "false", supported: "true")
        }
        if addCrossAttention {
            throw ModelError.unsupportedOption(path: path, key: "add_cross_attention", value: "true", supported: "false")
        }
    }

    public var decoderSpec: DecoderSpec {
        var s = DecoderSpec(family: "gpt2", hiddenSize: nEmbd, intermediateSize: nInner ?? 4 * nEmbd, numLayers: nLayer,
                            numHeads: nHead, numKVHeads: nHead, headDim: nEmbd / nHead, vocabSize: vocabSize,
                            maxPositions: nPositions, bosTokenId: bosTokenId, eosTokenIds: eosTokenId.map { [$0] } ?? [],
                            tieWordEmbeddings: tieWordEmbeddings, norm: .layer(eps: layerNormEpsilon),
                            mlp: .gelu(activationFunction == "gelu" ? .erf : .tanh),
                            rope: RoPE(headDim: 2, theta: 1))
        s.ropes = []
        s.learnedPositions = true
        s.fusedQKV = true
        s.qkvBias = true; s.outputBias = true; s.mlpBias = true
        return s
    }

    public var names: DecoderNames {
        var n = DecoderNames(
            layerPrefix: "transformer.h", embedding: "transformer.wte", finalNorm: "transformer.ln_f", head: "lm_head",
            linears: [.qkv: ("attn.c_attn", "attn_qkv"), .o: ("attn.c_proj", "attn_output"),
                      .up: ("mlp.c_fc", "ffn_up"), .down: ("mlp.c_proj", "ffn_down")],
            norms: [.attention: ("ln_1", "attn_norm"), .mlp: ("ln_2", "ffn_norm")])
        n.positions = "transformer.wpe"
        n.basePrefix = "transformer"
        n.linearsTransposed = true
        // Older checkpoints keep the causal-mask buffers; they hold no weights.
        n.ignored = Set((0..<nLayer).flatMap { ["transformer.h.\($0).attn.bias", "transformer.h.\($0).attn.masked_bias"] })
        return n
    }

    /// PEFT's default for GPT-2: c_attn.
    public var defaultTargetModules: [String] { ["c_attn"] }

    public func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings tie: Bool) -> JSONValue {
        func int(_ v: Int) -> JSONValue { .number(String(v)) }
        var m: [(key: String, value: JSONValue)] = [
            ("activation_function", .string(activationFunction)),
            ("architectures", .array([.string("GPT2LMHeadModel")])),
            ("attn_pdrop", .number("\(attnPdrop)")),
            ("bos_token_id", bosTokenId.map(int) ?? .null),
            ("dtype", .string(torchDType)),
            ("embd_pdrop", .number("\(embdPdrop)")),
            ("eos_token_id", eosTokenId.map(int) ?? .null),
            ("initializer_range", .number("0.02")),
            ("layer_norm_epsilon", .number("\(layerNormEpsilon)")),
            ("model_type", .string("gpt2")),
            ("n_embd", int(nEmbd)),
            ("n_head", int(nHead)),
            ("n_inner", nInner.map(int) ?? .null),
            ("n_layer", int(nLayer)),
            ("n_positions", int(nPositions)),
            ("reorder_and_upcast_attn", .bool(false)),
            ("resid_pdrop", .number("\(residPdrop)")),
            ("scale_attn_by_inverse_layer_idx", .bool(false)),
            ("scale_attn_weights", .bool(true)),
            ("tie_word_embeddings", .bool(tie)),
            ("torch_dtype", .string(torchDType)),
            ("use_cache", .bool(true)),
            ("vocab_size", int(vocabSize)),
        ]
        m.sort { $0.key < $1.key }
        return .object(m)
    }

    public func generationConfigJSON() -> JSONValue {
        ConfigChecks.generationConfigJSON(bos: bosTokenId, eos: eosTokenId.map { [$0] } ?? [])
    }
}

extension GPT2Config {
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        ("gpt2", try ggufKeys(path: path))
    }
}
