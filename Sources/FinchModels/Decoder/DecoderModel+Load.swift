import FinchCore
import FinchLoRA
import FinchQuant

extension DecoderModel {
    /// Builds the model `config` describes from named weights, storing linear and embedding
    /// weights as `dtype`. Loading is strict: a missing tensor, one of another shape, and one
    /// the model does not use (unless the family's names list it as ignored) are errors.
    ///
    /// With `quantization` the linear layers of the blocks are quantized as they load (QLoRA);
    /// embeddings, norms, biases and the LM head stay in `dtype`, as bitsandbytes + transformers
    /// leave them. Linears the source already holds in 4 bits (a checkpoint in bitsandbytes'
    /// layout) are used as stored, with products in `quantization?.computeDType ?? dtype`; asking
    /// for other 4-bit settings than the stored ones is an error (a model is quantized once).
    /// Without `quantization`, linears, the embedding and the LM head a GGUF source keeps in their
    /// blocks stay in them (`WeightSource.blockWeight`), products in `dtype`.
    public static func load(from source: WeightSource, config: any DecoderConfig, dtype: WeightDType,
                            quantization: QuantizationConfig? = nil) throws -> DecoderModel {
        var spec = config.decoderSpec
        let names = config.names
        let c = spec.hiddenSize
        try quantization?.validate()
        var source = source
        if let p = names.basePrefix, source.shape(of: "\(names.embedding).weight") == nil,
           names.embedding.hasPrefix(p + "."), source.shape(of: "\(names.embedding.dropFirst(p.count + 1)).weight") != nil {
            source = WithoutBasePrefix(base: source, prefix: p + ".")
        }
        if spec.moe != nil, let fused = try FusedExpertWeights(base: source, spec: spec, names: names) { source = fused }
        let root = WeightScope(source)

        func linear(_ scope: WeightScope, _ out: Int, _ inp: Int) throws -> LinearWeight {
            LinearWeight(outFeatures: out, inFeatures: inp, values: try scope.tensor("weight", shape: [out, inp]), dtype: dtype)
        }
        /// A block linear's values [out, in] (transposed from a Conv1D's [in, out]).
        func blockValues(_ scope: WeightScope, _ out: Int, _ inp: Int) throws -> Buffer<Float> {
            guard names.linearsTransposed else { return try scope.tensor("weight", shape: [out, inp]) }
            return transposed(try scope.tensor("weight", shape: [inp, out]), rows: inp, columns: out)
        }
        func blockLinear(_ scope: WeightScope, _ out: Int, _ inp: Int) throws -> LinearWeight {
            if quantization == nil, let blocks = try scope.blocks("weight", shape: [out, inp]) {
                return LinearWeight(outFeatures: out, inFeatures: inp, storage: .quantized(blocks, compute: dtype))
            }
            if let stored = try scope.quantized("weight") {
                let name = scope.name("weight")
                guard stored.shape == [out, inp] else {
                    throw ModelError.badWeightShape(path: source.path, name: name, expected: [out, inp], actual: stored.shape)
                }
                let has = stored.storedConfig
                if let q = quantization, !q.accepts(stored: has) {
                    throw ModelError.invalidConfig(path: source.path, reason: "'\(name)' is stored as \(has.isInt8 ? "LLM.int8" : "\(has.type.rawValue), blocksize \(has.blocksize)\(has.doubleQuant ? ", double quantization" : "")") but \(q.isInt8 ? "LLM.int8" : "\(q.type.rawValue), blocksize \(q.blocksize)\(q.doubleQuant ? ", double quantization" : "")") was asked for; a quantized checkpoint is used as stored: leave out --quantize or ask for the stored settings")
                }
                if let i8 = stored as? Int8Tensor, let t = quantization?.int8Threshold { i8.threshold = t }
                return LinearWeight(outFeatures: out, inFeatures: inp, storage: .quantized(stored, compute: quantization?.computeDType ?? dtype))
            }
            let values = try blockValues(scope, out, inp)
            guard let quantization else { return LinearWeight(outFeatures: out, inFeatures: inp, values: values, dtype: dtype) }
            return try quantization.linear(outFeatures: out, inFeatures: inp, values: values)
        }

        /// A norm weight as the norm applies it (w + offset, in f32 as transformers adds it).
        func applied(_ w: Buffer<Float>) -> Buffer<Float> {
            guard spec.normWeightOffset != 0 else { return w }
            return Buffer(w.array.map { $0 + spec.normWeightOffset })
        }

        /// The embedding or LM head: in its GGUF blocks when they are kept (rows expanded as they
        /// are looked up, products a chunk of rows at a time), else in `dtype`.
        func vocabularyMatrix(_ scope: WeightScope) throws -> LinearWeight {
            if quantization == nil, let blocks = try scope.blocks("weight", shape: [spec.vocabSize, c]) {
                return LinearWeight(outFeatures: spec.vocabSize, inFeatures: c, storage: .quantized(blocks, compute: dtype))
            }
            return try linear(scope, spec.vocabSize, c)
        }
        let embedding = try vocabularyMatrix(root.scoped(names.embedding))
        var lmHead = embedding
        let head = root.scoped(names.head)
        if head.has("weight") {
            lmHead = try vocabularyMatrix(head)
        } else if !spec.tieWordEmbeddings {
            throw ModelError.missingWeight(path: source.path, name: head.name("weight"))
        }
        var layers: [DecoderLayer] = []
        let blocks = root.scoped(names.layerPrefix)
        for i in 0..<spec.numLayers {
            let block = blocks.scoped(i)
            var linears: [DecoderLinear: any LinearLayer] = [:], biases: [DecoderLinear: Buffer<Float>] = [:]
            var norms: [DecoderNorm: Buffer<Float>] = [:], stored: [DecoderNorm: Buffer<Float>] = [:]
            var normBiases: [DecoderNorm: Buffer<Float>] = [:]
            for n in spec.norms {
                let scope = block.scoped(names.norms[n]!.hf)
                let w = try scope.tensor("weight", shape: [spec.channels(of: n)])
                stored[n] = w
                norms[n] = applied(w)
                if case .layer = spec.norm { normBiases[n] = try scope.tensor("bias", shape: [spec.channels(of: n)]) }
            }
            for l in spec.linears(layer: i) {
                let scope = block.scoped(names.linears[l]!.hf)
                let (o, inp) = spec.shape(of: l)
                linears[l] = try blockLinear(scope, o, inp)
                if spec.hasBias(l) { biases[l] = try scope.tensor("bias", shape: [o]) }
            }
            var moe: SparseMoE?
            if let m = spec.moe(layer: i) {
                guard let mn = names.moe else { throw ModelError.invalidConfig(path: source.path, reason: "the family has experts but names none") }
                let scope = block.scoped(mn.block)
                func expert(_ ex: WeightScope, _ f: Int) throws -> SparseMoE.Expert {
                    SparseMoE.Expert(gate: try blockLinear(ex.scoped(mn.gate), f, c), up: try blockLinear(ex.scoped(mn.up), f, c),
                                     down: try blockLinear(ex.scoped(mn.down), c, f))
                }
                let router = try blockLinear(scope.scoped(mn.router), m.experts, c)
                let experts = try (0..<m.experts).map { e in try expert(scope.scoped(mn.experts).scoped(e), m.expertSize) }
                var shared: SparseMoE.Expert?, sharedGate: (any LinearLayer)?
                if let s = m.sharedExpertSize, let sn = mn.sharedExpert, let gn = mn.sharedExpertGate {
                    shared = try expert(scope.scoped(sn), s)
                    sharedGate = try blockLinear(scope.scoped(gn), 1, c)
                }
                moe = SparseMoE(router: router, experts: experts, shared: shared, sharedGate: sharedGate, topK: m.topK, normalize: m.normalize)
            }
            layers.append(DecoderLayer(linears: linears, biases: biases, norms: norms, storedNorms: stored, normBiases: normBiases, moe: moe))
        }
        let norm = try root.scoped(names.finalNorm).tensor("weight", shape: [c])
        var normBias: Buffer<Float>?
        if case .layer = spec.norm { normBias = try root.scoped(names.finalNorm).tensor("bias", shape: [c]) }
        var positions: LinearWeight?
        if spec.learnedPositions {
            guard let p = names.positions else {
                throw ModelError.invalidConfig(path: source.path, reason: "the family learns positions but names no position embedding")
            }
            positions = try linear(root.scoped(p), spec.maxPositions, c)
        }
        if !spec.ropes.isEmpty, let factors = try source.ropeFrequencyFactors() {
            guard factors.count == spec.headDim / 2 else {
                throw ModelError.badWeightShape(path: source.path, name: "rope_freqs.weight", expected: [spec.headDim / 2],
                                                actual: [factors.count])
            }
            spec.ropes = spec.ropes.map { $0.dividingFrequencies(by: factors) }
            root.take("rope_freqs.weight")
        }
        try root.finish(ignoring: names.ignored)
        return DecoderModel(config: config, spec: spec, names: names, dtype: dtype, embedding: embedding, lmHead: lmHead,
                            finalNorm: applied(norm), finalNormStored: norm, finalNormBias: normBias,
                            positionEmbedding: positions, layers: layers)
    }
}

/// [columns, rows] = the transpose of m [rows, columns].
func transposed(_ m: Buffer<Float>, rows: Int, columns: Int) -> Buffer<Float> {
    let out = Buffer<Float>(count: m.count)
    for r in 0..<rows {
        for c in 0..<columns { out[c * rows + r] = m[r * columns + c] }
    }
    return out
}

/// A checkpoint saved from the base model alone, read under the full model's names: `prefix`
/// (`transformer.`) is taken off every name asked for, and put on every name listed.
struct WithoutBasePrefix: WeightSource {
    let base: WeightSource
    let prefix: String
    var path: String { base.path }
    var tensorNames: [String] { base.tensorNames.map { prefix + $0 } }
    func stripped(_ name: String) -> String { name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : name }
    func shape(of name: String) -> [Int]? { base.shape(of: stripped(name)) }
    func load(_ name: String) throws -> Buffer<Float> { try base.load(stripped(name)) }
    func ropeFrequencyFactors() throws -> [Float]? { try base.ropeFrequencyFactors() }
    func quantizedWeight(_ name: String) throws -> (any StoredQuantizedMatrix)? { try base.quantizedWeight(stripped(name)) }
}

/// A checkpoint in transformers 5's fused expert layout read under the per-expert names the families declare: each
/// sparse layer's `mlp.experts.gate_up_proj` [E, 2F, C] (expert e's gate rows, then its up rows) and
/// `mlp.experts.down_proj` [E, C, F] are given as each expert's gate, up and down [out, in] (slices read as they
/// are asked for, no copy of the whole tensor), and the router `mlp.gate` under the family's name for it
/// (Mixtral's per-expert layout says `block_sparse_moe`). Every other tensor passes through.
struct FusedExpertWeights: WeightSource {
    let base: WeightSource
    /// Per-expert name → (fused tensor, its elements).
    let slices: [String: (fused: String, elements: Range<Int>, shape: [Int])]
    /// Per-expert router name → transformers 5's.
    let renamed: [String: String]
    var path: String { base.path }

    /// Nil when `base` holds no fused expert tensor; throws when one has the wrong shape or only part of a layer is fused.
    init?(base: WeightSource, spec: DecoderSpec, names: DecoderNames) throws {
        var slices: [String: (fused: String, elements: Range<Int>, shape: [Int])] = [:], renamed: [String: String] = [:]
        for i in 0..<spec.numLayers {
            guard let m = spec.moe(layer: i) else { continue }
            let block = "\(names.layerPrefix).\(i).mlp", gateUp = block + ".experts.gate_up_proj", down = block + ".experts.down_proj"
            let has = (base.shape(of: gateUp), base.shape(of: down))
            if has.0 == nil && has.1 == nil { continue }
            let (x, f, c) = (m.experts, m.expertSize, spec.hiddenSize)
            for (name, shape, expected) in [(gateUp, has.0, [x, 2 * f, c]), (down, has.1, [x, c, f])] {
                guard let shape else { throw ModelError.missingWeight(path: base.path, name: name) }
                guard shape == expected else { throw ModelError.badWeightShape(path: base.path, name: name, expected: expected, actual: shape) }
            }
            for e in 0..<x {
                let start = e * 2 * f * c
                slices[names.expert(e, .gate, layer: i) + ".weight"] = (gateUp, start..<(start + f * c), [f, c])
                slices[names.expert(e, .up, layer: i) + ".weight"] = (gateUp, (start + f * c)..<(start + 2 * f * c), [f, c])
                slices[names.expert(e, .down, layer: i) + ".weight"] = (down, (e * c * f)..<((e + 1) * c * f), [c, f])
            }
            let router = names.router(layer: i) + ".weight"
            if router != block + ".gate.weight", base.shape(of: block + ".gate.weight") != nil { renamed[router] = block + ".gate.weight" }
        }
        if slices.isEmpty { return nil }
        self.base = base; self.slices = slices; self.renamed = renamed
    }

    var tensorNames: [String] {
        let fused = Set(slices.values.map(\.fused)), hidden = Set(renamed.values)
        return base.tensorNames.filter { !fused.contains($0) && !hidden.contains($0) } + slices.keys + renamed.keys
    }
    func shape(of name: String) -> [Int]? {
        if let s = slices[name] { return s.shape }
        return base.shape(of: renamed[name] ?? name)
    }
    func load(_ name: String) throws -> Buffer<Float> {
        if let s = slices[name] { return try base.load(s.fused, elements: s.elements) }
        return try base.load(renamed[name] ?? name)
    }
    func ropeFrequencyFactors() throws -> [Float]? { try base.ropeFrequencyFactors() }
    func quantizedWeight(_ name: String) throws -> (any StoredQuantizedMatrix)? {
        slices[name] != nil ? nil : try base.quantizedWeight(renamed[name] ?? name)
    }
}
