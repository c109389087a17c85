import FinchCore
import FinchFormats
import FinchLoRA
import Foundation

// Dimension letters: O out features, I in features, R rank.

/// What `saveGGUFLoRA` wrote.
public struct GGUFLoRAExport: Sendable {
    public let path: String
    public let architecture: String
    /// Number of adapted layers (two tensors each).
    public let modules: Int
    public let rank: Int
    /// `adapter.lora.alpha`: llama.cpp scales by alpha / r.
    public let alpha: Float
    /// Modules whose B was rescaled because their scale differs from alpha / r (rank_pattern /
    /// alpha_pattern adapters, or alpha 0).
    public let rescaled: [String]
}

extension DecoderConfig {
    /// Every linear layer of a block an adapter may target, by full module name → (out, in), as
    /// `LoRAHost.linearModules` gives them for a loaded model (so an adapter can be read without
    /// the weights).
    public var linearModules: [String: (out: Int, in: Int)] {
        let spec = decoderSpec
        var out: [String: (out: Int, in: Int)] = [:]
        for i in 0..<spec.numLayers {
            for l in spec.linears(layer: i) { out[names.module(l, layer: i)] = spec.shape(of: l) }
            for m in names.expertModules(spec: spec, layer: i) { out[m.name] = m.shape }
        }
        return out
    }

    /// Writes `adapter` as a llama.cpp LoRA adapter GGUF for a model of this config:
    /// `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted
    /// layer `<tensor>.weight.lora_a` (ggml [I, R], PEFT's A [R, I]) and `.lora_b` (ggml [R, O]),
    /// under llama.cpp's tensor names. llama.cpp adds (alpha / R) · B·A (times the user's scale)
    /// to the weight, so alpha is written as the trained scale × R: rsLoRA's alpha / √R comes
    /// out exactly. A module whose scale differs (`rank_pattern` / `alpha_pattern`) has its B
    /// multiplied by the ratio. Where llama.cpp's converter interleaves q / k rows (LLaMA), B's
    /// rows are interleaved the same way (A is unaffected: the rows of B·A are B's rows).
    /// `type` is f32, f16 or bf16 (B's rows of R values hold no whole quantization blocks).
    /// DoRA is refused: llama.cpp applies plain LoRA, so merge it (`saveGGUF`).
    /// - Throws: ``ExportError`` naming the family, option or type it cannot write.
    public func saveGGUFLoRA(_ adapter: LoRAAdapter, to path: String, type: GGUFExportType = .f32,
                             name: String? = nil) throws -> GGUFLoRAExport {
        guard [.f32, .f16, .bf16].contains(type) else {
            throw ExportError.unsupported(path: path, reason: "a LoRA adapter GGUF holds f32, f16 or bf16 factors (got \(type.rawValue)): rows of B are only r = \(adapter.config.r) values, too short for quantization blocks")
        }
        if adapter.config.useDoRA {
            throw ExportError.unsupported(path: path, reason: "this is a DoRA adapter, which llama.cpp cannot apply (it adds B·A without DoRA's magnitude rescaling); merge first: finch export --adapter DIR --format gguf")
        }
        if adapter.config.bias != "none" {
            throw ExportError.unsupported(path: path, reason: "the adapter trains biases (bias = \(adapter.config.bias)), which a llama.cpp LoRA adapter cannot hold; merge first: finch export --adapter DIR --format gguf")
        }
        guard !adapter.modules.isEmpty else {
            throw ExportError.unsupported(path: path, reason: "the adapter adapts no layer")
        }
        let (arch, _) = try ggufHyperparameters(path: path)
        let spec = decoderSpec
        let ggufOf = names.ggufNames(for: spec)
        let permuted = names.ggufPermutedHeads(for: spec)
        let shapes = linearModules
        // In checkpoint order (block by block); a module that is no block linear is named below.
        var order: [String] = []
        for i in 0..<spec.numLayers { for l in spec.linears(layer: i) { order.append(names.module(l, layer: i)) } }
        let rank = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        let modules = adapter.modules.sorted { (rank[$0.key] ?? .max, $0.key) < (rank[$1.key] ?? .max, $1.key) }
        // One alpha for the file: the first module's scale × its rank; a zero scale (alpha 0)
        // would read as "no alpha" (scale 1) in llama.cpp, so then alpha = R and B carries the 0.
        let first = modules[0].value
        let alpha = first.scaling != 0 ? first.scaling * Float(first.rank) : Float(first.rank)
        var rescaled: [String] = []
        var tensors: [GGUFWriter.Tensor] = []
        for (module, lora) in modules {
            guard let g = ggufOf[module + ".weight"], let shape = shapes[module] else {
                throw ExportError.unsupported(path: path, reason: "adapted module '\(module)' has no llama.cpp tensor in the \(arch) architecture")
            }
            precondition(shape.out == lora.outFeatures && shape.in == lora.inFeatures, "\(module): adapter shape checked on load")
            let r = lora.rank
            let applied = alpha / Float(r)   // what llama.cpp will multiply by
            let factor: Float? = applied == lora.scaling ? nil : lora.scaling / applied
            if factor != nil { rescaled.append(module) }
            let heads = permuted[module + ".weight"]
            let a = lora.a, b = lora.b
            let t = type.baseType
            tensors.append(GGUFWriter.Tensor(name: g + ".lora_a", type: t, dimensions: [lora.inFeatures, r]) { out in
                GGMLQuantizer.quantize(a.pointer, count: a.count, to: t, into: out)
            })
            tensors.append(GGUFWriter.Tensor(name: g + ".lora_b", type: t, dimensions: [r, lora.outFeatures]) { out in
                var v = b
                if let heads { v = GGUFWeightSource.reorderRotaryRows(v, heads: heads, rowLength: r, toGGUF: true) }
                if let factor {
                    let scaled = Buffer<Float>(count: v.count)
                    for i in 0..<v.count { scaled[i] = v[i] * factor }
                    v = scaled
                }
                if t == .f16, let bad = (0..<v.count).first(where: { v[$0].isFinite && abs(v[$0]) > 65504 }) {
                    throw ExportError.unsupported(path: path, reason: "'\(module)' lora_B holds \(v[bad]), which f16 cannot represent; write f32 or bf16")
                }
                GGMLQuantizer.quantize(v.pointer, count: v.count, to: t, into: out)
            })
        }
        let metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string(arch)),
            ("general.type", .string("adapter")),
            ("general.name", .string(name ?? "finch-lora")),
            ("adapter.type", .string("lora")),
            ("adapter.lora.alpha", .float32(alpha)),
        ]
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors)
        return GGUFLoRAExport(path: path, architecture: arch, modules: modules.count, rank: first.rank, alpha: alpha,
                              rescaled: rescaled)
    }
}

extension DecoderConfig {
    /// Reads a llama.cpp LoRA adapter GGUF (as `saveGGUFLoRA` or llama.cpp's
    /// `convert_lora_to_gguf.py` write it) for a model of this config: `<tensor>.lora_a` / `.lora_b`
    /// pairs under llama.cpp's names become PEFT modules (B's q / k rows de-interleaved where the
    /// family's converter interleaves them), scaled by `adapter.lora.alpha` / r as llama.cpp
    /// scales them (1 when alpha is 0 or absent).
    /// - Throws: ``ModelError`` naming the file and the key or tensor that does not fit this model.
    public func ggufLoRAAdapter(path: String) throws -> LoRAAdapter {
        let file = try GGUFFile(path: path)
        func string(_ key: String) -> String? { file.metadata[key]?.stringValue }
        guard string("general.type") == "adapter", string("adapter.type") == "lora" else {
            throw ModelError.invalidConfig(path: path, reason: "not a llama.cpp LoRA adapter (general.type = \(string("general.type") ?? "absent"), adapter.type = \(string("adapter.type") ?? "absent")); a GGUF adapter has general.type = adapter and adapter.type = lora")
        }
        let (arch, _) = try ggufHyperparameters(path: path)
        guard string("general.architecture") == arch else {
            throw ModelError.invalidConfig(path: path, reason: "the adapter is for llama.cpp architecture '\(string("general.architecture") ?? "(none)")' but this model is '\(arch)'")
        }
        var alpha: Float = 0
        switch file.metadata["adapter.lora.alpha"] {
        case .float32(let a)?: alpha = a
        case nil: break
        case let other?: throw ModelError.invalidConfig(path: path, reason: "adapter.lora.alpha must be a float32 (found \(other))")
        }
        let spec = decoderSpec
        let hfOf = Dictionary(uniqueKeysWithValues: names.ggufNames(for: spec).map { ($0.value, $0.key) })
        let permuted = names.ggufPermutedHeads(for: spec)
        let shapes = linearModules
        var pairs: [String: (a: GGUFTensorInfo?, b: GGUFTensorInfo?)] = [:]
        for t in file.tensors {
            let isA = t.name.hasSuffix(".lora_a")
            guard isA || t.name.hasSuffix(".lora_b") else {
                throw ModelError.invalidConfig(path: path, reason: "tensor '\(t.name)' is neither a .lora_a nor a .lora_b factor")
            }
            let base = String(t.name.dropLast(7))
            guard let hf = hfOf[base], hf.hasSuffix(".weight"), shapes[String(hf.dropLast(7))] != nil else {
                throw ModelError.invalidConfig(path: path, reason: "tensor '\(t.name)' adapts '\(base)', which is no block linear layer Finch adapts in this \(arch) model (output and token_embd adapters are not supported)")
            }
            let module = String(hf.dropLast(7))
            if isA { pairs[module, default: (nil, nil)].a = t } else { pairs[module, default: (nil, nil)].b = t }
        }
        guard !pairs.isEmpty else { throw ModelError.invalidConfig(path: path, reason: "the adapter holds no tensors") }
        var modules: [String: LoRAModule] = [:]
        var ranks: Set<Int> = []
        for (module, p) in pairs {
            guard let a = p.a, let b = p.b else {
                throw ModelError.invalidConfig(path: path, reason: "'\(module)' has only one of its .lora_a / .lora_b factors")
            }
            let shape = shapes[module]!
            let r = a.dimensions.count == 2 ? a.dimensions[1] : 0
            guard r > 0, a.dimensions == [shape.in, r], b.dimensions == [r, shape.out] else {
                throw ModelError.invalidConfig(path: path, reason: "'\(module)': lora_a is \(a.dimensions) and lora_b \(b.dimensions) (ggml order) but the layer needs [\(shape.in), r] and [r, \(shape.out)]")
            }
            ranks.insert(r)
            let av = Buffer<Float>(count: a.elementCount), bv0 = Buffer<Float>(count: b.elementCount)
            try file.dequantize(a, into: av.buffer)
            try file.dequantize(b, into: bv0.buffer)
            let bv = permuted[module + ".weight"].map { GGUFWeightSource.reorderRotaryRows(bv0, heads: $0, rowLength: r, toGGUF: false) } ?? bv0
            modules[module] = LoRAModule(rank: r, scaling: alpha != 0 ? alpha / Float(r) : 1, a: av, b: bv, magnitude: nil,
                                         inFeatures: shape.in, outFeatures: shape.out)
        }
        let r = ranks.min()!
        var config = AdapterConfig(r: r, loraAlpha: Double(alpha != 0 ? alpha : Float(r)), targetModules: .names(modules.keys.sorted()))
        for (module, m) in modules where m.rank != r {
            config.rankPattern[NSRegularExpression.escapedPattern(for: module)] = m.rank
            if alpha == 0 { config.alphaPattern[NSRegularExpression.escapedPattern(for: module)] = Double(m.rank) }
        }
        config.fanInFanOut = names.linearsTransposed
        return LoRAAdapter(config: config, modules: modules)
    }
}
