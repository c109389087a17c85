import FinchCore
import FinchFormats
import Foundation

// Dimension letters: V vocabulary, C d_model, H heads, B relative-position buckets.

/// GGUF: T5 as llama.cpp's `t5` architecture (its converter's names and keys), written by
/// `finch export --format gguf` and read back (weights only) for its self-check.
extension T5Model: GGUFExportable {
    /// llama.cpp's fixed `relative_attention_max_distance` (`llama_relative_position_bucket`).
    static let ggufMaxDistance = 128
    /// llama.cpp's converter's context length when config.json has no `n_positions`.
    static let ggufContextLength = 512

    /// Hugging Face name → llama.cpp's GGUF name of every tensor `exportPlan` writes
    /// (`shared` → `token_embd`, `encoder.block.i.layer.0.SelfAttention.q` → `enc.blk.i.attn_q`,
    /// `EncDecAttention` → `cross_attn_*`, `wi` (or, `gated`, `wi_1`) → `ffn_up`, `wi_0` → `ffn_gate`, `wo` →
    /// `ffn_down`, the position table of block 0 → `attn_rel_b`, `lm_head` → `output`).
    static func ggufNames(encoderLayers: Int, decoderLayers: Int, gated: Bool) -> [String: String] {
        var m = ["shared.weight": "token_embd.weight", "lm_head.weight": "output.weight",
                 "encoder.final_layer_norm.weight": "enc.output_norm.weight",
                 "decoder.final_layer_norm.weight": "dec.output_norm.weight"]
        let linear: [(T5Linear, String)] = [(.q, "attn_q"), (.k, "attn_k"), (.v, "attn_v"), (.o, "attn_o"),
                                            (.crossQ, "cross_attn_q"), (.crossK, "cross_attn_k"),
                                            (.crossV, "cross_attn_v"), (.crossO, "cross_attn_o"),
                                            (.wo, "ffn_down")]
            + (gated ? [(.wi0, "ffn_gate"), (.wi1, "ffn_up")] : [(.wi, "ffn_up")])
        for (stack, short, count, ffn) in [("encoder", "enc", encoderLayers, 1), ("decoder", "dec", decoderLayers, 2)] {
            for i in 0..<count {
                let hf = "\(stack).block.\(i).", g = "\(short).blk.\(i)."
                for (l, name) in linear where short == "dec" || ![.crossQ, .crossK, .crossV, .crossO].contains(l) {
                    m[hf + l.module(ffn: ffn) + ".weight"] = g + name + ".weight"
                }
                m[hf + "layer.0.layer_norm.weight"] = g + "attn_norm.weight"
                if short == "dec" { m[hf + "layer.1.layer_norm.weight"] = g + "cross_attn_norm.weight" }
                m[hf + "layer.\(ffn).layer_norm.weight"] = g + "ffn_norm.weight"
            }
            m["\(stack).block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = "\(short).blk.0.attn_rel_b.weight"
        }
        return m
    }

    /// The `t5.*` keys llama.cpp reads, as its converter writes them. What llama.cpp's graph
    /// fixes otherwise is refused by name: relative positions bucketed up to a distance of 128,
    /// the FFN ReLU or gated GELU (tanh, `gelu_new`), d_kv the key and value width.
    func ggufKeys(path: String) throws -> [(key: String, value: GGUFValue)] {
        func refuse(_ what: String) -> ExportError {
            .unsupported(path: path, reason: "\(what), which llama.cpp's t5 architecture fixes otherwise")
        }
        if config.relativeAttentionMaxDistance != Self.ggufMaxDistance {
            throw refuse("relative_attention_max_distance is \(config.relativeAttentionMaxDistance) (llama.cpp buckets positions up to \(Self.ggufMaxDistance))")
        }
        switch (config.isGated, activation) {
        case (false, .relu), (true, .gelu(.tanh)): break
        default: throw refuse("feed_forward_proj is '\(config.feedForwardProj)' (llama.cpp runs relu, or gated-gelu with the tanh GELU)")
        }
        return [
            ("t5.context_length", .uint32(UInt32(Self.ggufContextLength))),
            ("t5.embedding_length", .uint32(UInt32(config.dModel))),
            ("t5.feed_forward_length", .uint32(UInt32(config.dFf))),
            ("t5.block_count", .uint32(UInt32(config.numLayers))),
            ("t5.decoder_block_count", .uint32(UInt32(config.decoderLayers))),
            ("t5.attention.head_count", .uint32(UInt32(config.numHeads))),
            ("t5.attention.key_length", .uint32(UInt32(config.dKv))),
            ("t5.attention.value_length", .uint32(UInt32(config.dKv))),
            ("t5.attention.layer_norm_epsilon", .float32(config.layerNormEpsilon)),
            ("t5.attention.relative_buckets_count", .uint32(UInt32(config.relativeAttentionNumBuckets))),
            ("t5.attention.layer_norm_rms_epsilon", .float32(config.layerNormEpsilon)),
            ("t5.decoder_start_token_id", .uint32(UInt32(config.startTokenId))),
        ]
    }

    /// Writes the model as llama.cpp's `t5` architecture (see `GGUFExportable`). Types follow
    /// llama.cpp: norms f32; the position tables in the float type of f16 / bf16 files (as its
    /// converter writes them) and f32 in quantized ones (llama-quantize leaves `attn_rel_b`);
    /// every other 2-D weight in `type` with llama-quantize's output and fallback rules. llama.cpp
    /// has no rescale of the decoder output, so a model with one (original T5, tied) gets an
    /// `output` tensor holding the embedding times d_model^-0.5: llama.cpp's logits are then the
    /// model's (llama.cpp's converter writes no such tensor, and its logits are √d_model larger).
    /// - Throws: ``ExportError`` for a model llama.cpp computes differently (see `ggufKeys`), or
    ///   q4_k_m, whose layer-dependent mix over T5's two stacks is not implemented.
    public func saveGGUF(to path: String, tokenizer: [(key: String, value: GGUFValue)], type: GGUFExportType,
                         name: String? = nil) throws -> GGUFExport {
        let hyper = try ggufKeys(path: path)
        if type == .q4_k_m {
            throw ExportError.unsupported(path: path, reason: "q4_k_m's tensor mix for llama.cpp's t5 layout (attn_v and ffn_down counted across both stacks) is not implemented; use q8_0, q4_0 or a float type")
        }
        let names = Self.ggufNames(encoderLayers: config.numLayers, decoderLayers: config.decoderLayers, gated: config.isGated)
        var plan = try exportPlan(path: path)
        if let scale = outputScale {
            plan.removeAll { $0.name == "lm_head.weight" }
            plan.append(.init(name: "lm_head.weight", shape: [lmHead.outFeatures, config.dModel], values: { [lmHead] in
                let w = lmHead.floatValues()   // the model's own buffer for f32 weights: scaled into a copy
                let v = Buffer<Float>(uninitializedCount: w.count)
                for i in 0..<w.count { v[i] = w[i] * scale }
                return v
            }))
        }
        let tied = !plan.contains { $0.name == "lm_head.weight" }
        var tensors: [GGUFWriter.Tensor] = []
        var counts: [GGMLType: Int] = [:]
        for t in plan {
            guard let g = names[t.name] else {
                throw ExportError.unsupported(path: path, reason: "tensor '\(t.name)' has no llama.cpp name in the t5 architecture")
            }
            let ne = Array(t.shape.reversed())
            var gt = type.tensorType(ggufName: g, ne0: ne[0], rank: ne.count, layer: nil, layers: config.numLayers,
                                     isOutput: g == "output.weight" || (tied && g == "token_embd.weight"))
            if g.hasSuffix("attn_rel_b.weight") && ![.f16, .bf16].contains(type) { gt = .f32 }
            counts[gt, default: 0] += 1
            let values = t.values
            tensors.append(GGUFWriter.Tensor(name: g, type: gt, dimensions: ne) { out in
                let v = values()
                try GGUFExport.encode(v, as: gt, tensor: t.name, path: path, into: out)
            })
        }
        return try GGUFExport.writeModel(to: path, architecture: "t5", type: type, name: name, hyperparameters: hyper,
                                         tokenizer: tokenizer, tensors: tensors, counts: counts, adapters: exportedAdapters)
    }

    /// The config a `t5` GGUF file describes, as transformers would write it for the same model:
    /// llama.cpp's fixed max distance (128), `gated-gelu` when the file has `ffn_gate` tensors
    /// (else `relu`), a head of its own when there is an `output` tensor (no rescale: llama.cpp
    /// has none), the special ids from the tokenizer keys.
    static func config(gguf file: GGUFFile) throws -> T5Config {
        let int = file.requiredInt
        let vocab = file.tensor(named: "token_embd.weight")?.dimensions.last ?? 0
        let eps = file.metadata["t5.attention.layer_norm_rms_epsilon"]?.doubleValue ?? 1e-6
        let layers = try int("t5.block_count")
        let decoderLayers = file.metadata["t5.decoder_block_count"]?.intValue ?? layers
        let json: [(key: String, value: JSONValue)] = [
            ("model_type", .string("t5")), ("vocab_size", .int(vocab)), ("d_model", .int(try int("t5.embedding_length"))),
            ("d_kv", .int(try int("t5.attention.key_length"))), ("d_ff", .int(try int("t5.feed_forward_length"))),
            ("num_layers", .int(layers)), ("num_decoder_layers", .int(decoderLayers)),
            ("num_heads", .int(try int("t5.attention.head_count"))),
            ("relative_attention_num_buckets", .int(try int("t5.attention.relative_buckets_count"))),
            ("relative_attention_max_distance", .int(ggufMaxDistance)), ("layer_norm_epsilon", .double(eps)),
            ("feed_forward_proj", .string(file.tensor(named: "enc.blk.0.ffn_gate.weight") != nil ? "gated-gelu" : "relu")),
            ("tie_word_embeddings", .bool(file.tensor(named: "output.weight") == nil)), ("scale_decoder_outputs", .bool(false)),
            ("decoder_start_token_id", .int(file.metadata["t5.decoder_start_token_id"]?.intValue ?? 0)),
            ("eos_token_id", .int(file.metadata["tokenizer.ggml.eos_token_id"]?.intValue ?? 1)),
            ("pad_token_id", .int(file.metadata["tokenizer.ggml.padding_token_id"]?.intValue ?? 0)),
            ("dropout_rate", .double(0)),
        ]
        let data = Data(JSONValue.object(json).serialized().utf8)
        return try T5Config(json: data, path: file.path)
    }

    /// Loads a `t5` GGUF file's weights (dequantized to f32, then held in `dtype`) under the
    /// names `ggufNames` maps, with the config it describes (see `config(gguf:)`).
    public static func load(gguf file: GGUFFile, dtype: WeightDType = .f32, keepBlocks: Bool = false) throws -> T5Model {
        let config = try config(gguf: file)
        let names = ggufNames(encoderLayers: config.numLayers, decoderLayers: config.decoderLayers, gated: config.isGated)
        var source = GGUFWeightSource(file: file, ggufNames: names)
        source.keepsBlocks = keepBlocks
        return try load(from: source, config: config, dtype: dtype)
    }
}
