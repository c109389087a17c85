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
    /// A family without a GGUF writer says so (families implement `ggufHyperparameters` in their folder).
    public func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)]) {
        throw ExportError.unsupported(path: path, reason: "GGUF export of the \(decoderSpec.family) family is not implemented yet")
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
        // Experts: each layer's gate / up / down of every expert in one 3-D tensor (ggml [in, out, E]).
        let slices = names.ggufExpertSlices(for: spec)
        if !slices.isEmpty && type == .q4_k_m {
            throw ExportError.unsupported(path: path, reason: "q4_k_m of a mixture of experts (llama-quantize's rules for expert tensors are not reproduced); export f32, f16, bf16, q8_0 or q4_0")
        }
        var expertValues: [String: [Int: () -> Buffer<Float>]] = [:], expertShape: [String: [Int]] = [:]
        for t in plan { if let (g, e) = slices[t.name] { expertValues[g, default: [:]][e] = t.values; expertShape[g] = t.shape } }
        var written = Set<String>()
        let tied = lmHead === embedding
        let permuted = names.ggufPermutedHeads(for: spec)
        var tensors: [GGUFWriter.Tensor] = []
        var counts: [GGMLType: Int] = [:]
        for t in plan {
            if let (g, _) = slices[t.name] {
                guard written.insert(g).inserted else { continue }
                let parts = expertValues[g]!, shape = expertShape[g]!, count = parts.count
                guard parts.keys.sorted() == Array(0..<count) else {
                    throw ExportError.unsupported(path: path, reason: "\(g): the experts' weights are not all in the model")
                }
                let layer = Int(g.dropFirst(4).prefix { $0.isNumber })
                let ne = [shape[1], shape[0], count]
                let gt = type.tensorType(ggufName: g, ne0: ne[0], rank: 3, layer: layer, layers: spec.numLayers, isOutput: false)
                counts[gt, default: 0] += 1
                tensors.append(GGUFWriter.Tensor(name: g, type: gt, dimensions: ne) { out in
                    let per = ne[0] * ne[1], v = Buffer<Float>(count: per * count)
                    for e in 0..<count {
                        let w = parts[e]!()
                        (v.pointer + e * per).update(from: w.pointer, count: per)
                    }
                    try GGUFExport.encode(v, as: gt, tensor: g, path: path, into: out)
                })
                continue
            }
            guard let g = ggufOf[t.name] else {
                throw ExportError.unsupported(path: path, reason: "tensor '\(t.name)' has no llama.cpp name in the \(arch) architecture")
            }
            let layer = g.hasPrefix("blk.") ? Int(g.dropFirst(4).prefix { $0.isNumber }) : nil
            var ne = Array(t.shape.reversed())
            if DecoderNames.ggufStoresAsVector(g) { ne = [ne[0]] }
            let isOutput = g == "output.weight" || (tied && g == "token_embd.weight")
            let gt = type.tensorType(ggufName: g, ne0: ne[0], rank: ne.count, layer: layer, layers: spec.numLayers, isOutput: isOutput)
            counts[gt, default: 0] += 1
            let heads = permuted[t.name], shift = g.hasSuffix("norm.weight") ? names.ggufNormShift : 0
            let values = t.values
            tensors.append(GGUFWriter.Tensor(name: g, type: gt, dimensions: ne) { out in
                var v = values()
                if let heads { v = GGUFWeightSource.reorderRotaryRows(v, heads: heads, rowLength: ne.count > 1 ? ne[0] : 1, toGGUF: true) }
                if shift != 0 { for i in 0..<v.count { v[i] += shift } }
                try GGUFExport.encode(v, as: gt, tensor: t.name, path: path, into: out)
            })
        }
        if tied, names.ggufRequiresOutput, let e = plan.first(where: { ggufOf[$0.name] == "token_embd.weight" }) {
            let ne = Array(e.shape.reversed())
            let gt = type.tensorType(ggufName: "output.weight", ne0: ne[0], rank: 2, layer: nil, layers: spec.numLayers, isOutput: true)
            counts[gt, default: 0] += 1
            tensors.append(GGUFWriter.Tensor(name: "output.weight", type: gt, dimensions: ne) { out in
                try GGUFExport.encode(e.values(), as: gt, tensor: e.name, path: path, into: out)
            })
        }
        if let f = ropeFactors {
            tensors.append(GGUFWriter.Tensor(name: "rope_freqs.weight", type: .f32, dimensions: [f.count]) { out in
                f.withUnsafeBytes { out.copyMemory(from: $0) }
            })
            counts[.f32, default: 0] += 1
        }
        return try GGUFExport.writeModel(to: path, architecture: arch, type: type, name: name, hyperparameters: hyper,
                                         tokenizer: tokenizer, tensors: tensors, counts: counts, adapters: exportedAdapters)
    }
}
