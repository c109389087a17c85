import FinchCore
import FinchLoRA
import FinchQuant
import Foundation

// Dimension letters: N rows (new tokens of all sequences in a call), C hidden size,
// H query heads, G key/value heads, D head dim, F intermediate size, V vocabulary.

/// Which rows' logits a forward pass computes.
public enum LogitsSelection: Sendable {
    /// Every new token of every sequence.
    case all
    /// The last new token of each sequence (what generation needs).
    case last
}

/// One sequence's input to a forward pass: new tokens appended after what its cache holds.
public struct LlamaSequenceInput {
    public var tokens: [Int]
    public var cache: LlamaKVCache
    public init(tokens: [Int], cache: LlamaKVCache) { self.tokens = tokens; self.cache = cache }
}

/// Logits of a forward pass: rows [R, V], sequence s owning `rows[s]`.
public struct LlamaLogits {
    public let values: Buffer<Float>
    public let vocabSize: Int
    public let rows: [Range<Int>]

    /// Logits of row r (a view valid while `values` lives).
    public func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: values.pointer + r * vocabSize, count: vocabSize)
    }
}

/// One decoder block: frozen norms and its seven linear layers (frozen weights, or the same
/// wrapped with adapters: layers are swapped, see LlamaModel+LoRA.swift).
final class LlamaLayer: @unchecked Sendable {
    let inputNorm: Buffer<Float>          // [C]
    let postAttentionNorm: Buffer<Float>  // [C]
    var q: any LinearLayer, k: any LinearLayer, v: any LinearLayer, o: any LinearLayer
    var gate: any LinearLayer, up: any LinearLayer, down: any LinearLayer

    /// Module names of the linear layers, relative to `model.layers.N.`, as Hugging Face names them.
    static let linearNames = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

    /// The linear layer with a `linearNames` name.
    func linear(_ name: String) -> any LinearLayer {
        switch name {
        case "self_attn.q_proj": q
        case "self_attn.k_proj": k
        case "self_attn.v_proj": v
        case "self_attn.o_proj": o
        case "mlp.gate_proj": gate
        case "mlp.up_proj": up
        default: down
        }
    }

    /// Replaces the linear layer with a `linearNames` name.
    func setLinear(_ name: String, _ layer: any LinearLayer) {
        switch name {
        case "self_attn.q_proj": q = layer
        case "self_attn.k_proj": k = layer
        case "self_attn.v_proj": v = layer
        case "self_attn.o_proj": o = layer
        case "mlp.gate_proj": gate = layer
        case "mlp.up_proj": up = layer
        default: down = layer
        }
    }

    init(inputNorm: Buffer<Float>, postAttentionNorm: Buffer<Float>, q: LinearWeight, k: LinearWeight,
         v: LinearWeight, o: LinearWeight, gate: LinearWeight, up: LinearWeight, down: LinearWeight) {
        self.inputNorm = inputNorm; self.postAttentionNorm = postAttentionNorm
        self.q = q; self.k = k; self.v = v; self.o = o; self.gate = gate; self.up = up; self.down = down
    }
}

/// A LLaMA-family causal language model (LLaMA 1-3, SmolLM, Mistral-style without sliding window).
///
/// Not thread-safe: one forward pass at a time (each pass uses every core).
public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    /// Storage type of the linear and embedding weights.
    public let dtype: WeightDType
    let embedding: LinearWeight          // [V, C]
    let lmHead: LinearWeight             // [V, C], the same object as `embedding` when tied
    let finalNorm: Buffer<Float>         // [C]
    let layers: [LlamaLayer]
    let rope: RoPE
    let scratch = Scratch()
    private var work = Workspace(rows: 0, config: nil)
    /// Training buffers, kept between steps (see LlamaModel+Training.swift).
    var trainingWork: LlamaTrainingWorkspace?
    /// The PEFT config of each loaded adapter, by name.
    public internal(set) var adapterConfigs: [String: AdapterConfig] = [:]

    init(config: LlamaConfig, dtype: WeightDType, embedding: LinearWeight, lmHead: LinearWeight,
         finalNorm: Buffer<Float>, layers: [LlamaLayer], rope: RoPE) {
        self.config = config; self.dtype = dtype; self.embedding = embedding; self.lmHead = lmHead
        self.finalNorm = finalNorm; self.layers = layers; self.rope = rope
    }

    /// Builds the model from named weights, storing linear and embedding weights as `dtype`.
    /// With `quantization` the linear layers of the blocks are quantized as they load (QLoRA);
    /// embeddings, norms and the LM head stay in `dtype`, as bitsandbytes + transformers leave them.
    /// Linears the source already holds in 4 bits (a checkpoint in bitsandbytes' layout) are used
    /// as stored, with products in `quantization?.computeDType ?? dtype`; asking for other 4-bit
    /// settings than the stored ones is an error (a quantized model is quantized once).
    public static func load(from source: WeightSource, config: LlamaConfig, dtype: WeightDType,
                            quantization: QuantizationConfig? = nil) throws -> LlamaModel {
        let c = config.hiddenSize, f = config.intermediateSize
        let qd = config.numAttentionHeads * config.headDim, kvd = config.numKeyValueHeads * config.headDim
        try quantization?.validate()
        func linear(_ name: String, _ out: Int, _ inp: Int) throws -> LinearWeight {
            LinearWeight(outFeatures: out, inFeatures: inp, values: try source.load(name, shape: [out, inp]), dtype: dtype)
        }
        func blockLinear(_ name: String, _ out: Int, _ inp: Int) throws -> LinearWeight {
            if let stored = try source.quantizedWeight(name) {
                guard stored.shape == [out, inp] else {
                    throw ModelError.badWeightShape(path: source.path, name: name, expected: [out, inp], actual: stored.shape)
                }
                if let q = quantization, q.type != stored.type || q.blocksize != stored.blocksize || q.doubleQuant != stored.isDoubleQuantized {
                    let has = QuantizationConfig(type: stored.type, blocksize: stored.blocksize, doubleQuant: stored.isDoubleQuantized)
                    throw ModelError.invalidConfig(path: source.path, reason: "'\(name)' is stored in 4 bits (\(has.type.rawValue), blocksize \(has.blocksize)\(has.doubleQuant ? ", double quantization" : "")) but \(q.type.rawValue), blocksize \(q.blocksize)\(q.doubleQuant ? ", double quantization" : "") was asked for; a quantized checkpoint is used as stored: leave out --quantize or ask for the stored settings")
                }
                return LinearWeight(outFeatures: out, inFeatures: inp, storage: .quantized(stored, compute: quantization?.computeDType ?? dtype))
            }
            guard let quantization else { return try linear(name, out, inp) }
            return try quantization.linear(outFeatures: out, inFeatures: inp, values: try source.load(name, shape: [out, inp]))
        }
        let embedding = try linear("model.embed_tokens.weight", config.vocabSize, c)
        var lmHead = embedding
        if !config.tieWordEmbeddings || source.shape(of: "lm_head.weight") != nil {
            if source.shape(of: "lm_head.weight") != nil {
                lmHead = try linear("lm_head.weight", config.vocabSize, c)
            } else if !config.tieWordEmbeddings {
                throw ModelError.missingWeight(path: source.path, name: "lm_head.weight")
            }
        }
        var layers: [LlamaLayer] = []
        for i in 0..<config.numHiddenLayers {
            let p = "model.layers.\(i)."
            layers.append(LlamaLayer(
                inputNorm: try source.load(p + "input_layernorm.weight", shape: [c]),
                postAttentionNorm: try source.load(p + "post_attention_layernorm.weight", shape: [c]),
                q: try blockLinear(p + "self_attn.q_proj.weight", qd, c),
                k: try blockLinear(p + "self_attn.k_proj.weight", kvd, c),
                v: try blockLinear(p + "self_attn.v_proj.weight", kvd, c),
                o: try blockLinear(p + "self_attn.o_proj.weight", c, qd),
                gate: try blockLinear(p + "mlp.gate_proj.weight", f, c),
                up: try blockLinear(p + "mlp.up_proj.weight", f, c),
                down: try blockLinear(p + "mlp.down_proj.weight", c, f)))
        }
        let norm = try source.load("model.norm.weight", shape: [c])
        var rope = config.rope
        if let factors = try source.ropeFrequencyFactors() {
            guard factors.count == config.headDim / 2 else {
                throw ModelError.badWeightShape(path: source.path, name: "rope_freqs.weight", expected: [config.headDim / 2], actual: [factors.count])
            }
            rope = RoPE(headDim: config.headDim, theta: config.ropeTheta).dividingFrequencies(by: factors)
        }
        return LlamaModel(config: config, dtype: dtype, embedding: embedding, lmHead: lmHead, finalNorm: norm,
                          layers: layers, rope: rope)
    }

    /// Whether any block linear is held in 4 bits.
    public var isQuantized: Bool {
        layers.contains { l in
            LlamaLayer.linearNames.contains { if case .quantized = Self.baseWeight(l.linear($0)).storage { true } else { false } }
        }
    }

    /// Replaces every 4-bit block linear by its dequantized values stored as `dtype` (before an
    /// adapter is attached: merging into full precision instead of requantizing).
    /// - Throws: ``ModelError/badInput(_:)`` when an adapter is attached to a 4-bit layer.
    public func dequantizeLinears() throws {
        // Checked first, so a refused call leaves every layer as it was.
        for l in layers {
            for name in LlamaLayer.linearNames where !(l.linear(name) is LinearWeight) {
                if case .quantized = Self.baseWeight(l.linear(name)).storage {
                    throw ModelError.badInput("dequantize the base before loading an adapter")
                }
            }
        }
        for l in layers {
            for name in LlamaLayer.linearNames {
                guard let w = l.linear(name) as? LinearWeight, case .quantized = w.storage else { continue }
                l.setLinear(name, LinearWeight(outFeatures: w.outFeatures, inFeatures: w.inFeatures,
                                               values: w.floatValues(), dtype: dtype))
            }
        }
    }

    /// Bytes held by the weights.
    public var weightBytes: Int {
        var total = embedding.byteCount + finalNorm.byteCount
        if lmHead !== embedding { total += lmHead.byteCount }
        for l in layers {
            total += l.inputNorm.byteCount + l.postAttentionNorm.byteCount
            for name in LlamaLayer.linearNames { total += Self.baseWeight(l.linear(name)).byteCount }
        }
        return total
    }

    /// An empty key/value cache for one sequence.
    public func makeCache(capacity: Int = 256) -> LlamaKVCache {
        LlamaKVCache(layers: config.numHiddenLayers, kvHeads: config.numKeyValueHeads,
                     headDim: config.headDim, capacity: capacity)
    }

    /// Activation buffers for up to `rows` rows, reused across calls.
    struct Workspace {
        let rows: Int
        let x, xn, q, k, v, att, gate, up, h: Buffer<Float>
        /// bf16 copy of xn shared by the products that read it (bf16 weights only).
        let xnBF16: Buffer<BF16Bits>
        init(rows: Int, config: LlamaConfig?) {
            self.rows = rows
            let c = config?.hiddenSize ?? 0, f = config?.intermediateSize ?? 0
            let qd = (config?.numAttentionHeads ?? 0) * (config?.headDim ?? 0)
            let kvd = (config?.numKeyValueHeads ?? 0) * (config?.headDim ?? 0)
            x = Buffer(count: rows * c); xn = Buffer(count: rows * c)
            q = Buffer(count: rows * qd); k = Buffer(count: rows * kvd); v = Buffer(count: rows * kvd)
            att = Buffer(count: rows * qd)
            gate = Buffer(count: rows * f); up = Buffer(count: rows * f); h = Buffer(count: rows * f)
            xnBF16 = Buffer(count: rows * c)
        }

        /// xn as bf16 when `weight` multiplies bf16 inputs at this size, else nil.
        func sharedBF16(for weight: any LinearLayer, rows n: Int, channels c: Int) -> UnsafePointer<BF16Bits>? {
            guard weight.wantsBF16Input(rows: n) else { return nil }
            BFloat16.convert(xn.pointer, to: xnBF16.pointer, count: n * c)
            return UnsafePointer(xnBF16.pointer)
        }
    }

    /// Runs the new tokens of every sequence through the model, appending them to the
    /// sequences' caches, and returns the selected logits.
    public func forward(_ inputs: [LlamaSequenceInput], logits selection: LogitsSelection = .last) throws -> LlamaLogits {
        let cfg = config
        let c = cfg.hiddenSize, hq = cfg.numAttentionHeads, g = cfg.numKeyValueHeads, d = cfg.headDim
        let f = cfg.intermediateSize, vocab = cfg.vocabSize
        var tokens: [Int] = []
        var positions: [Int32] = []
        var segments: [(start: Int, count: Int, cache: LlamaKVCache)] = []
        for input in inputs {
            guard !input.tokens.isEmpty else { throw ModelError.badInput("a sequence in the batch has no new tokens") }
            for t in input.tokens where t < 0 || t >= vocab {
                throw ModelError.badInput("token id \(t) is outside the vocabulary (0..<\(vocab))")
            }
            if segments.contains(where: { $0.cache === input.cache }) {
                throw ModelError.badInput("two sequences in one batch share a cache")
            }
            let past = input.cache.length
            segments.append((tokens.count, input.tokens.count, input.cache))
            tokens += input.tokens
            positions += (0..<input.tokens.count).map { Int32(past + $0) }
            input.cache.reserve(past + input.tokens.count)
        }
        let n = tokens.count
        if work.rows < n || work.x.count != work.rows * c { work = Workspace(rows: max(n, 1), config: cfg) }
        let w = work

        // x [N, C] = embedding rows
        embedRows(tokens, into: w.x.pointer)
        let angles = rope.table(positions: positions)

        for (li, layer) in layers.enumerated() {
            // Attention block.
            RMSNorm.forward(out: w.xn.pointer, rstd: nil, x: w.x.pointer, weight: layer.inputNorm.pointer,
                            rows: n, channels: c, eps: cfg.rmsNormEps)
            var xb = w.sharedBF16(for: layer.q, rows: n, channels: c)
            layer.q.forward(y: w.q.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)   // [N, H·D]
            layer.k.forward(y: w.k.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)   // [N, G·D]
            layer.v.forward(y: w.v.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)   // [N, G·D]
            rope.apply(w.q.pointer, heads: hq, table: angles)
            rope.apply(w.k.pointer, heads: g, table: angles)
            var attSegments: [AttentionSegment] = []
            for s in segments {
                s.cache.store(layer: li, k: w.k.pointer + s.start * g * d, v: w.v.pointer + s.start * g * d, rows: s.count)
                attSegments.append(AttentionSegment(rowStart: s.start, rowCount: s.count, pastLength: s.cache.length,
                                                    keys: s.cache.keys[li].pointer, values: s.cache.values[li].pointer,
                                                    capacity: s.cache.capacity))
            }
            Attention.forward(out: w.att.pointer, q: w.q.pointer, segments: attSegments, heads: hq, kvHeads: g,
                              headDim: d, scale: 1 / Float(d).squareRoot())
            layer.o.forward(y: w.x.pointer, x: w.att.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch)  // x += att·Woᵀ

            // MLP block.
            RMSNorm.forward(out: w.xn.pointer, rstd: nil, x: w.x.pointer, weight: layer.postAttentionNorm.pointer,
                            rows: n, channels: c, eps: cfg.rmsNormEps)
            xb = w.sharedBF16(for: layer.gate, rows: n, channels: c)
            layer.gate.forward(y: w.gate.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)  // [N, F]
            layer.up.forward(y: w.up.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)      // [N, F]
            SwiGLU.forward(h: w.h.pointer, gate: w.gate.pointer, up: w.up.pointer, count: n * f)
            layer.down.forward(y: w.x.pointer, x: w.h.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch)  // x += h·Wdᵀ
        }
        for s in segments { s.cache.advance(by: s.count) }

        // Select rows, final norm, LM head.
        var picked: [Int] = []
        var ranges: [Range<Int>] = []
        for s in segments {
            let first = picked.count
            switch selection {
            case .all: picked += Array(s.start..<(s.start + s.count))
            case .last: picked.append(s.start + s.count - 1)
            }
            ranges.append(first..<picked.count)
        }
        let r = picked.count
        let sel = Buffer<Float>(count: r * c)
        for (i, row) in picked.enumerated() { (sel.pointer + i * c).update(from: w.x.pointer + row * c, count: c) }
        RMSNorm.forward(out: sel.pointer, rstd: nil, x: sel.pointer, weight: finalNorm.pointer, rows: r, channels: c,
                        eps: cfg.rmsNormEps)
        let out = Buffer<Float>(count: r * vocab)
        lmHead.forward(y: out.pointer, x: sel.pointer, rows: r, scratch: scratch)
        return LlamaLogits(values: out, vocabSize: vocab, rows: ranges)
    }

    /// x [N, C] = rows of the embedding matrix.
    func embedRows(_ tokens: [Int], into x: UnsafeMutablePointer<Float>) {
        let c = config.hiddenSize
        for (i, t) in tokens.enumerated() {
            switch embedding.storage {
            case .f32(let e): (x + i * c).update(from: e.pointer + t * c, count: c)
            case .bf16(let e): BFloat16.convert(e.pointer + t * c, to: x + i * c, count: c)
            case .quantized: preconditionFailure("embeddings are never quantized")
            }
        }
    }
}

extension LlamaModel {
    /// Logits for a padded batch, as a Hugging Face model call with an attention mask would give
    /// for the unmasked positions. `tokens` [B][T]; `attentionMask` [B][T] of 0/1 (nil = all 1).
    /// Each row's unmasked tokens sit at positions 0, 1, … in order (left or right padding alike);
    /// masked positions get zero logits. Returns [B][T][V].
    public func logits(tokens: [[Int]], attentionMask: [[Int]]? = nil) throws -> [[[Float]]] {
        var inputs: [LlamaSequenceInput] = []
        var kept: [[Int]] = []
        for (b, row) in tokens.enumerated() {
            let mask = attentionMask?[b] ?? Array(repeating: 1, count: row.count)
            guard mask.count == row.count else { throw ModelError.badInput("attention mask row \(b) has \(mask.count) entries for \(row.count) tokens") }
            let idx = row.indices.filter { mask[$0] != 0 }
            kept.append(idx)
            if !idx.isEmpty { inputs.append(LlamaSequenceInput(tokens: idx.map { row[$0] }, cache: makeCache(capacity: idx.count))) }
        }
        let out = inputs.isEmpty ? nil : try forward(inputs, logits: .all)
        var result: [[[Float]]] = []
        var seq = 0
        for (b, row) in tokens.enumerated() {
            var rows = Array(repeating: [Float](repeating: 0, count: config.vocabSize), count: row.count)
            if !kept[b].isEmpty, let out {
                for (j, t) in kept[b].enumerated() { rows[t] = Array(out.row(out.rows[seq].lowerBound + j)) }
                seq += 1
            }
            result.append(rows)
        }
        return result
    }
}
