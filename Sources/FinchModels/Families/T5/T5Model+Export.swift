import FinchCore
import FinchFormats
import FinchLoRA
import FinchTokenizer
import Foundation

/// Export: the model as a Hugging Face `T5ForConditionalGeneration` directory, with an active
/// adapter folded into the weights (`finch merge`).
extension T5Model: Seq2SeqLM {
    public var decoderStartTokenId: Int { config.startTokenId }
    /// Relative positions (buckets) set no limit on the decoder's length.
    public var maxPositions: Int { Int.max }

    /// `config.json` as transformers reads it back to this model (keys sorted).
    func huggingFaceConfigJSON(torchDType: String) -> JSONValue {
        func int(_ v: Int) -> JSONValue { .number(String(v)) }
        func num(_ v: Double) -> JSONValue { .number(String(v)) }
        var m: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string("T5ForConditionalGeneration")])),
            ("d_ff", int(config.dFf)), ("d_kv", int(config.dKv)), ("d_model", int(config.dModel)),
            ("decoder_start_token_id", int(config.startTokenId)), ("dropout_rate", num(config.dropoutRate)),
            ("dtype", .string(torchDType)), ("feed_forward_proj", .string(config.feedForwardProj)),
            ("is_encoder_decoder", .bool(true)), ("layer_norm_epsilon", num(Double(config.layerNormEpsilon))),
            ("model_type", .string("t5")), ("num_decoder_layers", int(config.decoderLayers)),
            ("num_heads", int(config.numHeads)), ("num_layers", int(config.numLayers)),
            ("relative_attention_max_distance", int(config.relativeAttentionMaxDistance)),
            ("relative_attention_num_buckets", int(config.relativeAttentionNumBuckets)),
            // transformers rescales the decoder output exactly when this is not false.
            ("tie_word_embeddings", .bool(config.scalesDecoderOutput)),
            ("vocab_size", int(config.vocabSize)),
        ]
        if let e = config.eosTokenId { m.append(("eos_token_id", int(e))) }
        if let p = config.padTokenId { m.append(("pad_token_id", int(p))) }
        m.sort { $0.key < $1.key }
        return .object(m)
    }

    /// The tensors an export writes, in transformers' order, each a producer of its f32 values.
    func exportPlan(path: String) throws -> [ExportTensor] {
        if !activeModuleCopies.isEmpty {
            throw ExportError.unsupported(path: path, reason: "the active adapter trains \(activeModuleCopies.keys.sorted().joined(separator: ", ")) in full (modules_to_save), and a T5 checkpoint ties both stacks' embeddings (and an original T5's head) to `shared`: it cannot hold the trained copies; use the adapter with the base model instead of merging it")
        }
        let c = config.dModel
        var plan: [ExportTensor] = [
            .init(name: "shared.weight", shape: [shared.outFeatures, c], values: { [shared] in shared.floatValues() })]
        func vector(_ name: String, _ b: Buffer<Float>, shape: [Int]) { plan.append(.init(name: name, shape: shape, values: { b })) }
        for (stack, blocks, ffn) in [("encoder", encoder, 1), ("decoder", decoder, 2)] {
            for (i, block) in blocks.enumerated() {
                let prefix = "\(stack).block.\(i)."
                for l in block.roles {
                    let layer = block[l]
                    if case .quantized = baseWeight(layer).storage, let w = layer as? LoRALinear, w.merged != nil {
                        throw ExportError.unsupported(path: path, reason: "a merged adapter in a 4-bit layer cannot be written exactly; merge into the dequantized base instead")
                    }
                    plan.append(.init(name: prefix + l.module(ffn: ffn) + ".weight", shape: [layer.outFeatures, layer.inFeatures],
                                      values: { effectiveWeight(layer) }))
                    if l == .o {
                        if i == 0 {
                            vector(prefix + "layer.0.SelfAttention.relative_attention_bias.weight",
                                   stack == "encoder" ? encoderBias : decoderBias,
                                   shape: [config.relativeAttentionNumBuckets, config.numHeads])
                        }
                        vector(prefix + "layer.0.layer_norm.weight", block.selfNorm, shape: [c])
                    }
                    if l == .crossO, let n = block.crossNorm { vector(prefix + "layer.1.layer_norm.weight", n, shape: [c]) }
                }
                vector(prefix + "layer.\(ffn).layer_norm.weight", block.ffnNorm, shape: [c])
            }
            vector("\(stack).final_layer_norm.weight", stack == "encoder" ? encoderFinalNorm : decoderFinalNorm, shape: [c])
        }
        if lmHead !== shared {
            plan.append(.init(name: "lm_head.weight", shape: [lmHead.outFeatures, c], values: { [lmHead] in lmHead.floatValues() }))
        }
        return plan
    }

    /// Writes `config.json`, `generation_config.json`, the weights (`model.safetensors`, or shards and
    /// their index past `options.maxShardBytes`; 4-bit layers dequantized; an active adapter folded
    /// into a copy of each weight, the model unchanged) and,
    /// with a tokenizer, `tokenizer.json` + `tokenizer_config.json`, atomically (a temporary
    /// sibling renamed into place).
    public func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, options: HuggingFaceExportOptions) throws
        -> HuggingFaceExport {
        if isQuantized && !options.dequantize {
            throw ExportError.unsupported(path: directory, reason: "T5's 4-bit layers are written dequantized only; export dequantized (finch merge without --keep-4bit)")
        }
        let plan = try exportPlan(path: directory)
        var gen: [(key: String, value: JSONValue)] = [("_from_model_config", .bool(true)),
                                                      ("decoder_start_token_id", .number(String(config.startTokenId)))]
        if let e = config.eosTokenId { gen.append(("eos_token_id", .number(String(e)))) }
        if let p = config.padTokenId { gen.append(("pad_token_id", .number(String(p)))) }
        return try HuggingFaceWriter.writeDirectory(directory, plan: plan, config: huggingFaceConfigJSON(torchDType: options.dtype.torchName),
                                                    generationConfig: .object(gen), tokenizer: tokenizer, options: options,
                                                    adapters: exportedAdapters)
    }
}
