import FinchCore
import FinchLoRA

// Dimension letters: N rows (the tokens of all sequences of a micro-batch, packed), C hidden size,
// H query heads, G key/value heads, D head dim, F intermediate size, V vocabulary, L layers.

/// One training sequence: its tokens and per-token labels (usually the tokens themselves, with
/// -100 where no loss is taken, e.g. on the prompt). Labels are not shifted: the loss of row t
/// predicts the label of token t + 1, as Hugging Face's causal-LM loss does.
public struct TrainingSequence: Sendable, Equatable {
    public var tokens: [Int32]
    public var labels: [Int32]
    public init(tokens: [Int32], labels: [Int32]) { self.tokens = tokens; self.labels = labels }
    /// A sequence trained on every token (labels = tokens).
    public init(tokens: [Int32]) { self.init(tokens: tokens, labels: tokens) }
    /// Positions that take a loss after the causal shift (labels at positions 1... that are
    /// not -100). A sequence with none teaches nothing.
    public var lossTokenCount: Int {
        var n = 0
        for i in labels.indices.dropFirst() where labels[i] != CrossEntropy.ignoreIndex { n += 1 }
        return n
    }
}

/// A summed loss: `sum` of the counted tokens' cross-entropies, and their `count`.
public struct LossSum: Sendable, Equatable {
    public var sum: Double
    public var count: Int
    public init(sum: Double = 0, count: Int = 0) { self.sum = sum; self.count = count }
    /// The mean loss (NaN when nothing counted).
    public var mean: Double { count == 0 ? .nan : sum / Double(count) }
    public static func + (a: LossSum, b: LossSum) -> LossSum { LossSum(sum: a.sum + b.sum, count: a.count + b.count) }
}

/// What one decoder block's backward needs from its forward (besides its input).
final class LlamaLayerActivations {
    let q, k, v, att: Buffer<Float>       // [N, H·D] q and [N, G·D] k after RoPE; v [N, G·D]; att [N, H·D]
    let lse: Buffer<Float>                // [N, H] attention logsumexp
    let xMid: Buffer<Float>               // [N, C] residual after attention
    let gate, up: Buffer<Float>           // [N, F]
    let rstd1, rstd2: Buffer<Float>       // [N]
    init(rows n: Int, config c: LlamaConfig) {
        let qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim
        q = Buffer(count: n * qd); k = Buffer(count: n * kvd); v = Buffer(count: n * kvd); att = Buffer(count: n * qd)
        lse = Buffer(count: n * c.numAttentionHeads); xMid = Buffer(count: n * c.hiddenSize)
        gate = Buffer(count: n * c.intermediateSize); up = Buffer(count: n * c.intermediateSize)
        rstd1 = Buffer(count: n); rstd2 = Buffer(count: n)
    }
}

/// Buffers of a training pass over up to `rows` rows (kept on the model and reused).
final class LlamaTrainingWorkspace {
    let rows: Int
    let checkpointing: Bool
    /// Residual stream at each layer's input, and after the last layer: L + 1 buffers [N, C].
    let residual: [Buffer<Float>]
    /// Per layer (one shared set under gradient checkpointing, recomputed in backward).
    let layers: [LlamaLayerActivations]
    let xn: Buffer<Float>, h: Buffer<Float>                 // [N, C], [N, F] recomputed temporaries
    let xnBF16: Buffer<BF16Bits>                            // [N, C]
    let finalNormed: Buffer<Float>, finalRstd: Buffer<Float> // [N, C], [N]
    let dx, dxn: Buffer<Float>                              // [N, C]
    let dq, dk, dv, datt: Buffer<Float>                     // [N, H·D], [N, G·D], [N, G·D], [N, H·D]
    let dh, dgate, dup: Buffer<Float>                       // [N, F]

    init(rows n: Int, config c: LlamaConfig, checkpointing: Bool) {
        rows = n; self.checkpointing = checkpointing
        let ch = c.hiddenSize, f = c.intermediateSize
        let qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim
        residual = (0...c.numHiddenLayers).map { _ in Buffer(count: n * ch) }
        layers = (0..<(checkpointing ? 1 : c.numHiddenLayers)).map { _ in LlamaLayerActivations(rows: n, config: c) }
        xn = Buffer(count: n * ch); h = Buffer(count: n * f); xnBF16 = Buffer(count: n * ch)
        finalNormed = Buffer(count: n * ch); finalRstd = Buffer(count: n)
        dx = Buffer(count: n * ch); dxn = Buffer(count: n * ch)
        dq = Buffer(count: n * qd); dk = Buffer(count: n * kvd); dv = Buffer(count: n * kvd); datt = Buffer(count: n * qd)
        dh = Buffer(count: n * f); dgate = Buffer(count: n * f); dup = Buffer(count: n * f)
    }
}

/// Training: forward with saved activations, the loss, and backward through the frozen model
/// into the active adapter's gradients (see LlamaModel+LoRA.swift for adapters).
extension LlamaModel {
    /// The packed rows of a batch: tokens [N], per-row targets [N] (shifted labels), sequence ranges.
    struct PackedBatch {
        let tokens: [Int]
        let targets: [Int32]
        let sequences: [Range<Int>]
        let positions: [Int32]
    }

    func pack(_ batch: [TrainingSequence]) throws -> PackedBatch {
        var tokens: [Int] = [], labels: [Int32] = [], sequences: [Range<Int>] = [], positions: [Int32] = []
        for (i, s) in batch.enumerated() {
            guard !s.tokens.isEmpty else { throw ModelError.badInput("training sequence \(i) has no tokens") }
            guard s.labels.count == s.tokens.count else {
                throw ModelError.badInput("training sequence \(i) has \(s.tokens.count) tokens but \(s.labels.count) labels")
            }
            for t in s.tokens where t < 0 || Int(t) >= config.vocabSize {
                throw ModelError.badInput("token id \(t) in training sequence \(i) is outside the vocabulary (0..<\(config.vocabSize))")
            }
            sequences.append(tokens.count..<(tokens.count + s.tokens.count))
            tokens += s.tokens.map(Int.init)
            labels += s.labels
            positions += (0..<s.tokens.count).map(Int32.init)
        }
        return PackedBatch(tokens: tokens, targets: CrossEntropy.shiftedTargets(labels: labels, sequences: sequences),
                           sequences: sequences, positions: positions)
    }

    /// A workspace for `rows` rows, reusing the last one when it fits.
    func trainingWorkspace(rows: Int, checkpointing: Bool) -> LlamaTrainingWorkspace {
        if let w = trainingWork, w.rows >= rows, w.checkpointing == checkpointing { return w }
        trainingWork = nil   // release before allocating the next
        let w = LlamaTrainingWorkspace(rows: rows, config: config, checkpointing: checkpointing)
        trainingWork = w
        return w
    }

    /// Frees the training buffers (they are kept between steps otherwise).
    public func releaseTrainingMemory() { trainingWork = nil }

    /// Forward and backward over one micro-batch of packed sequences: returns the summed loss and
    /// adds `lossScale` · ∂(summed loss)/∂θ to the gradients of the active adapter's parameters
    /// (`lossScale` nil = 1 / this batch's counted tokens, i.e. the gradient of the mean loss;
    /// with gradient accumulation pass 1 / the count of all accumulated micro-batches).
    /// `dropoutKey` keys the adapters' dropout masks (nil = no dropout). With `checkpointing`,
    /// only each block's input is kept and the block is recomputed in backward: less memory,
    /// identical gradients.
    @discardableResult
    public func forwardBackward(_ batch: [TrainingSequence], lossScale: Float? = nil, checkpointing: Bool = false,
                                dropoutKey: UInt64? = nil) throws -> LossSum {
        let p = try pack(batch)
        let n = p.tokens.count, c = config.hiddenSize
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        let count = CrossEntropy.countTargets(p.targets, rows: n)
        if count == 0 { return LossSum() }
        let w = trainingWorkspace(rows: n, checkpointing: checkpointing)
        forEachLoRALinear { $0.dropoutKey = dropoutKey }
        defer { forEachLoRALinear { $0.dropoutKey = nil } }
        let table = rope.table(positions: p.positions)

        // Forward, keeping each block's input (and, without checkpointing, its activations).
        embedRows(p.tokens, into: w.residual[0].pointer)
        for li in 0..<layers.count {
            layerTrainingForward(li, x: w.residual[li].pointer, out: w.residual[li + 1].pointer,
                                 acts: w.layers[checkpointing ? 0 : li], w: w, rows: n, p: p, table: table)
        }

        // Final norm, LM head, loss and its backward (chunked: [N, V] logits never exist at once).
        let xL = w.residual[layers.count].pointer
        RMSNorm.forward(out: w.finalNormed.pointer, rstd: w.finalRstd.pointer, x: xL, weight: finalNorm.pointer,
                        rows: n, channels: c, eps: config.rmsNormEps)
        w.dxn.pointer.update(repeating: 0, count: n * c)
        let loss = try p.targets.withUnsafeBufferPointer { t in
            try CrossEntropy.linearForwardBackward(dx: w.dxn.pointer, x: w.finalNormed.pointer, head: lmHead,
                                                   targets: t.baseAddress!, rows: n,
                                                   scale: lossScale ?? 1 / Float(count), scratch: scratch)
        }
        w.dx.pointer.update(repeating: 0, count: n * c)
        RMSNorm.backward(dx: w.dx.pointer, dweight: nil, dout: w.dxn.pointer, x: xL, weight: finalNorm.pointer,
                         rstd: w.finalRstd.pointer, rows: n, channels: c)

        // Backward through the blocks, last to first; dx carries ∂loss/∂(residual stream).
        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            let acts = w.layers[checkpointing ? 0 : li]
            if checkpointing {
                // Recompute the block (its output goes to a scratch copy; the saved input stays).
                layerTrainingForward(li, x: w.residual[li].pointer, out: w.dxn.pointer, acts: acts, w: w,
                                     rows: n, p: p, table: table)
            }
            layerBackward(li, x: w.residual[li].pointer, acts: acts, w: w, rows: n, p: p, table: table)
        }
        return LossSum(sum: loss.sum, count: loss.count)
    }

    /// The summed loss of a batch without gradients (evaluation; adapters' dropout off).
    public func evaluate(_ batch: [TrainingSequence]) throws -> LossSum {
        let p = try pack(batch)
        let n = p.tokens.count, c = config.hiddenSize
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        if CrossEntropy.countTargets(p.targets, rows: n) == 0 { return LossSum() }
        let w = trainingWorkspace(rows: n, checkpointing: true)
        let table = rope.table(positions: p.positions)
        embedRows(p.tokens, into: w.residual[0].pointer)
        for li in 0..<layers.count {
            layerTrainingForward(li, x: w.residual[li].pointer, out: w.residual[li + 1].pointer, acts: w.layers[0],
                                 w: w, rows: n, p: p, table: table)
        }
        RMSNorm.forward(out: w.finalNormed.pointer, rstd: nil, x: w.residual[layers.count].pointer,
                        weight: finalNorm.pointer, rows: n, channels: c, eps: config.rmsNormEps)
        let loss = try p.targets.withUnsafeBufferPointer { t in
            try CrossEntropy.linearForward(x: w.finalNormed.pointer, head: lmHead, targets: t.baseAddress!, rows: n,
                                           scratch: scratch)
        }
        return LossSum(sum: loss.sum, count: loss.count)
    }

    /// One decoder block in training: out [N, C] = block(x [N, C]), saving `acts`.
    func layerTrainingForward(_ li: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                              acts a: LlamaLayerActivations, w: LlamaTrainingWorkspace, rows n: Int,
                              p: PackedBatch, table: RoPE.Table) {
        let cfg = config, layer = layers[li]
        let c = cfg.hiddenSize, hq = cfg.numAttentionHeads, g = cfg.numKeyValueHeads, d = cfg.headDim
        let f = cfg.intermediateSize
        // Attention block: xMid = x + o(attention(rope(q(xn)), rope(k(xn)), v(xn))), xn = norm(x).
        RMSNorm.forward(out: w.xn.pointer, rstd: a.rstd1.pointer, x: x, weight: layer.inputNorm.pointer,
                        rows: n, channels: c, eps: cfg.rmsNormEps)
        var xb = sharedBF16(w, for: layer.q, rows: n)
        layer.q.forward(y: a.q.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)
        layer.k.forward(y: a.k.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)
        layer.v.forward(y: a.v.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)
        rope.apply(a.q.pointer, heads: hq, table: table)
        rope.apply(a.k.pointer, heads: g, table: table)
        Attention.trainingForward(out: a.att.pointer, logsumexp: a.lse.pointer, q: a.q.pointer, k: a.k.pointer,
                                  v: a.v.pointer, sequences: p.sequences, heads: hq, kvHeads: g, headDim: d,
                                  scale: 1 / Float(d).squareRoot())
        a.xMid.pointer.update(from: x, count: n * c)
        layer.o.forward(y: a.xMid.pointer, x: a.att.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch)
        // MLP block: out = xMid + down(silu(gate(xn)) · up(xn)), xn = norm(xMid).
        RMSNorm.forward(out: w.xn.pointer, rstd: a.rstd2.pointer, x: a.xMid.pointer, weight: layer.postAttentionNorm.pointer,
                        rows: n, channels: c, eps: cfg.rmsNormEps)
        xb = sharedBF16(w, for: layer.gate, rows: n)
        layer.gate.forward(y: a.gate.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)
        layer.up.forward(y: a.up.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, scratch: scratch)
        SwiGLU.forward(h: w.h.pointer, gate: a.gate.pointer, up: a.up.pointer, count: n * f)
        out.update(from: a.xMid.pointer, count: n * c)
        layer.down.forward(y: out, x: w.h.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch)
    }

    /// Backward of `layerTrainingForward`: on entry w.dx holds ∂loss/∂out, on exit ∂loss/∂x;
    /// the block's adapters add their parameter gradients.
    func layerBackward(_ li: Int, x: UnsafePointer<Float>, acts a: LlamaLayerActivations, w: LlamaTrainingWorkspace,
                       rows n: Int, p: PackedBatch, table: RoPE.Table) {
        let cfg = config, layer = layers[li]
        let c = cfg.hiddenSize, hq = cfg.numAttentionHeads, g = cfg.numKeyValueHeads, d = cfg.headDim
        let f = cfg.intermediateSize, qd = hq * d, kvd = g * d
        // MLP: recompute xn = norm(xMid) and h; dh = dx·Wdown; dgate, dup; dxn; dx += norm backward.
        RMSNorm.forward(out: w.xn.pointer, rstd: nil, x: a.xMid.pointer, weight: layer.postAttentionNorm.pointer,
                        rows: n, channels: c, eps: cfg.rmsNormEps)
        SwiGLU.forward(h: w.h.pointer, gate: a.gate.pointer, up: a.up.pointer, count: n * f)
        layer.down.backward(dx: w.dh.pointer, dy: w.dx.pointer, x: w.h.pointer, rows: n, accumulate: false, scratch: scratch)
        w.dgate.pointer.update(repeating: 0, count: n * f)
        w.dup.pointer.update(repeating: 0, count: n * f)
        SwiGLU.backward(dgate: w.dgate.pointer, dup: w.dup.pointer, dh: w.dh.pointer, gate: a.gate.pointer,
                        up: a.up.pointer, count: n * f)
        layer.gate.backward(dx: w.dxn.pointer, dy: w.dgate.pointer, x: w.xn.pointer, rows: n, accumulate: false, scratch: scratch)
        layer.up.backward(dx: w.dxn.pointer, dy: w.dup.pointer, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch)
        RMSNorm.backward(dx: w.dx.pointer, dweight: nil, dout: w.dxn.pointer, x: a.xMid.pointer,
                         weight: layer.postAttentionNorm.pointer, rstd: a.rstd2.pointer, rows: n, channels: c)
        // Attention: datt = dx·Wo; attention backward; un-rotate dq, dk; dxn; dx += norm backward.
        layer.o.backward(dx: w.datt.pointer, dy: w.dx.pointer, x: a.att.pointer, rows: n, accumulate: false, scratch: scratch)
        w.dq.pointer.update(repeating: 0, count: n * qd)
        w.dk.pointer.update(repeating: 0, count: n * kvd)
        w.dv.pointer.update(repeating: 0, count: n * kvd)
        Attention.trainingBackward(dq: w.dq.pointer, dk: w.dk.pointer, dv: w.dv.pointer, dout: w.datt.pointer,
                                   out: a.att.pointer, logsumexp: a.lse.pointer, q: a.q.pointer, k: a.k.pointer,
                                   v: a.v.pointer, sequences: p.sequences, heads: hq, kvHeads: g, headDim: d,
                                   scale: 1 / Float(d).squareRoot())
        rope.backward(w.dq.pointer, heads: hq, table: table)
        rope.backward(w.dk.pointer, heads: g, table: table)
        RMSNorm.forward(out: w.xn.pointer, rstd: nil, x: x, weight: layer.inputNorm.pointer, rows: n, channels: c,
                        eps: cfg.rmsNormEps)
        layer.q.backward(dx: w.dxn.pointer, dy: w.dq.pointer, x: w.xn.pointer, rows: n, accumulate: false, scratch: scratch)
        layer.k.backward(dx: w.dxn.pointer, dy: w.dk.pointer, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch)
        layer.v.backward(dx: w.dxn.pointer, dy: w.dv.pointer, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch)
        RMSNorm.backward(dx: w.dx.pointer, dweight: nil, dout: w.dxn.pointer, x: x, weight: layer.inputNorm.pointer,
                         rstd: a.rstd1.pointer, rows: n, channels: c)
    }

    /// xn as bf16 when `weight` multiplies bf16 inputs at this size (converted once for the products sharing it).
    func sharedBF16(_ w: LlamaTrainingWorkspace, for weight: any LinearLayer, rows n: Int) -> UnsafePointer<BF16Bits>? {
        guard weight.wantsBF16Input(rows: n) else { return nil }
        BFloat16.convert(w.xn.pointer, to: w.xnBF16.pointer, count: n * config.hiddenSize)
        return UnsafePointer(w.xnBF16.pointer)
    }
}
