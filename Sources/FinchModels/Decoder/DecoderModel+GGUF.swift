import FinchCore
import FinchFormats
import Foundation

// Dimension letters: O out features, I in features.

/// What a GGUF export stores, as llama.cpp names its file types: the whole model in one float
/// type (norms and biases always f32, as llama.cpp's converter writes them), or quantized with
/// the tensor mix llama-quantize makes for that type.
public enum GGUFExportType: String, Sendable, CaseIterable {
    case f32, f16, bf16, q8_0, q4_0
    case q4_k_m = "q4_k_m"

    /// `general.file_type` (`llama_ftype`).
    public var fileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .q4_k_m: 15
        case .bf16: 32
        }
    }

    /// The type of most 2-D tensors.
    var baseType: GGMLType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_k_m: .q4_K
        }
    }

    /// The type llama-quantize gives a tensor (without an importance matrix): `ggufName` its
    /// GGUF name, `ne0` its row length, `rank` its number of dimensions, `layer` the block it
    /// belongs to of `layers`, `isOutput` for the LM head (or the embedding tied to it).
    func tensorType(ggufName: String, ne0: Int, rank: Int, layer: Int?, layers: Int, isOutput: Bool) -> GGMLType {
        if rank < 2 || self == .f32 { return .f32 }
        var t = baseType
        if self == .f16 || self == .bf16 { return t }
        // llama.cpp's rule for Q4_K_M's extra bits: the first and last eighth of the layers and every third between.
        func moreBits(_ i: Int) -> Bool { i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2 }
        if isOutput {
            if t != .q8_0 { t = ne0 % t.blockSize != 0 ? .q8_0 : .q6_K }
        } else if self == .q4_k_m, let i = layer, ggufName.hasSuffix(".attn_v.weight") || ggufName.hasSuffix(".ffn_down.weight") {
            if moreBits(i) { t = .q6_K }
        }
        // Rows that do not hold whole blocks fall back as llama-quantize falls back.
        if ne0 % t.blockSize != 0 {
            switch t {
            case .q4_K: t = .q5_0
            case .q6_K: t = .q8_0
            default: break
            }
            if ne0 % t.blockSize != 0 { t = .f16 }
        }
        return t
    }
}

/// What `saveGGUF` wrote.
public struct GGUFExport: Sendable {
    public let path: String
    public let architecture: String
    public let tensorCount: Int
    public let bytes: Int
    /// Number of tensors of each type.
    public let typeCounts: [GGMLType: Int]
    public let adapters: [String]
}

extension DecoderConfig {
    /// llama.cpp's architecture and `<arch>.*` hyperparameters; families llama.cpp cannot run
    /// as Finch does refuse, naming why.
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        switch self {
        case let c as LlamaConfig:
            return ("llama", try c.ggufKeys(arch: "llama", path: path))
        case let c as MistralConfig:
            if let w = c.slidingWindow, w < c.base.maxPositionEmbeddings {
                throw ExportError.unsupported(path: path, reason: "this Mistral model attends within a sliding window of \(w) tokens, which llama.cpp's llama architecture does not keep (it would attend to all \(c.base.maxPositionEmbeddings) positions)")
            }
            return ("llama", try c.base.ggufKeys(arch: "llama", path: path))
        case let c as QwenConfig:
            if c.layerWindows.contains(where: { $0 != nil }) {
                throw ExportError.unsupported(path: path, reason: "sliding-window layers (use_sliding_window) are not kept by llama.cpp's \(c.family.rawValue) architecture")
            }
            var base = c.base
            base.attentionBias = false   // qwen2's q/k/v biases are part of the architecture
            return (c.family.rawValue, try base.ggufKeys(arch: c.family.rawValue, path: path))
        case let c as Gemma3Config:
            return ("gemma3", try c.ggufKeys(path: path))
        case let c as GPT2Config:
            return ("gpt2", try c.ggufKeys(path: path))
        default:
            throw ExportError.unsupported(path: path, reason: "GGUF export of the \(decoderSpec.family) family is not implemented yet (llama, mistral, qwen2, qwen3, gemma3 and gpt2 are)")
        }
    }
}

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

extension DecoderModel {
    /// Writes the model as a llama.cpp GGUF file: `general.*` and the architecture's keys, the
    /// tokenizer metadata given (`tokenizer.*`, see `Tokenizer.ggufMetadata`), and every weight
    /// under llama.cpp's names, in `type` (llama-quantize's tensor mix for the quantized types,
    /// its reference quantizers' bytes). Weights are what `forward` computes with: a merged
    /// adapter is in them, an active unmerged one is folded in as the file is written (as
    /// `saveHuggingFace` does), 4-bit layers are dequantized. q / k rows are interleaved as
    /// llama.cpp's converter stores them where the family's converter does, and norm weights
    /// shifted where it shifts them. The file appears atomically.
    /// - Throws: ``ExportError`` for a family or option llama.cpp would compute differently,
    ///   ``FinchFormats/FormatError`` from the writer.
    public func saveGGUF(to path: String, tokenizer: [(key: String, value: GGUFValue)], type: GGUFExportType,
                         name: String? = nil) throws -> GGUFExport {
        let (arch, hyper) = try config.ggufHyperparameters(path: path)
        // Rotary frequencies other than 1 / θ^(2i/D) (llama3 or linear scaling, or a source's own
        // rope_freqs): llama.cpp's llama architecture divides by a rope_freqs tensor, as its
        // converter writes it for Llama 3.1; the others would rotate differently. (gemma3: its
        // per-layer rotations are llama.cpp's fixed ones, checked with its keys.)
        var ropeFactors: [Float]? = nil
        if !["gemma3", "gpt2"].contains(arch), let rope = spec.ropes.first, case .float32(let theta)? = hyper.first(where: { $0.key == "\(arch).rope.freq_base" })?.value {
            let plain = RoPE(headDim: rope.headDim, theta: theta).invFreq
            if spec.ropes.contains(where: { $0 != rope }) {
                throw ExportError.unsupported(path: path, reason: "layers rotate with different frequencies, which this export does not write")
            }
            if zip(plain, rope.invFreq).contains(where: { abs($0 - $1) > 1e-6 * max(abs($0), abs($1)) }) {
                guard arch == "llama" else {
                    throw ExportError.unsupported(path: path, reason: "scaled rotary frequencies are written for llama.cpp's llama architecture only (as rope_freqs)")
                }
                ropeFactors = zip(plain, rope.invFreq).map { Float(Double($0) / Double($1)) }
            }
        }
        let plan = try exportPlan(keepQuantized: false, path: path, linearsAsStored: false)
        let ggufOf = names.ggufNames(for: spec)
        let tied = lmHead === embedding
        let permuted = names.ggufPermutedHeads(for: spec)
        var tensors: [GGUFWriter.Tensor] = []
        var counts: [GGMLType: Int] = [:]
        for t in plan {
            guard let g = ggufOf[t.name] else {
                throw ExportError.unsupported(path: path, reason: "tensor '\(t.name)' has no llama.cpp name in the \(arch) architecture")
            }
            let layer = g.hasPrefix("blk.") ? Int(g.dropFirst(4).prefix { $0.isNumber }) : nil
            let ne = Array(t.shape.reversed())
            let isOutput = g == "output.weight" || (tied && g == "token_embd.weight")
            let gt = type.tensorType(ggufName: g, ne0: ne[0], rank: ne.count, layer: layer, layers: spec.numLayers, isOutput: isOutput)
            counts[gt, default: 0] += 1
            let heads = permuted[t.name], shift = g.hasSuffix("norm.weight") ? names.ggufNormShift : 0
            let values = t.values
            tensors.append(GGUFWriter.Tensor(name: g, type: gt, dimensions: ne) { out in
                var v = values()
                if let heads { v = GGUFWeightSource.reorderRotaryRows(v, heads: heads, rowLength: ne.count > 1 ? ne[0] : 1, toGGUF: true) }
                if shift != 0 { for i in 0..<v.count { v[i] += shift } }
                if gt == .f16, let bad = (0..<v.count).first(where: { v[$0].isFinite && abs(v[$0]) > 65504 }) {
                    throw ExportError.unsupported(path: path, reason: "tensor '\(t.name)' holds \(v[bad]), which f16 cannot represent; export as bf16 or f32")
                }
                GGMLQuantizer.quantize(v.pointer, count: v.count, to: gt, into: out)
            })
        }
        if let f = ropeFactors {
            tensors.append(GGUFWriter.Tensor(name: "rope_freqs.weight", type: .f32, dimensions: [f.count]) { out in
                f.withUnsafeBytes { out.copyMemory(from: $0) }
            })
            counts[.f32, default: 0] += 1
        }
        var metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string(arch)),
            ("general.type", .string("model")),
            ("general.name", .string(name ?? "finch-export")),
            ("general.file_type", .uint32(type.fileType)),
            ("general.quantization_version", .uint32(2)),
        ]
        metadata += hyper
        metadata += tokenizer.filter { $0.key.hasPrefix("tokenizer.") }
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors)
        return GGUFExport(path: path, architecture: arch, tensorCount: tensors.count,
                          bytes: tensors.reduce(0) { $0 + $1.byteCount }, typeCounts: counts, adapters: exportedAdapters)
    }
}
