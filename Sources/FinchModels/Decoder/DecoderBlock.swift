import FinchCore
import FinchLoRA

// Dimension letters: N rows, C hidden size, H query heads, G key/value heads, D head dim,
// Q = H·D, K = G·D, F intermediate size, L layers.

/// One sequence's rows in a cached forward pass and the cache they append to.
struct CachedSegment {
    let start: Int
    let count: Int
    let cache: KVCache
}

/// How a block's attention finds its keys: in the sequences' caches (inference: the new keys
/// are stored first), or within the packed sequences of a training batch (saving the
/// log-sum-exp for backward).
enum BlockAttention {
    case cached([CachedSegment])
    case packed([Range<Int>])
}

/// What one block keeps from its forward for its backward (besides its input). Sizes are
/// declared once, in `sizes`, and used both to allocate and to predict memory.
final class DecoderActivations {
    let q, k, v, att: Buffer<Float>       // [N, Q] q and [N, K] k after q/k norm and rotation; v [N, K]; att [N, Q]
    let lse: Buffer<Float>                // [N, H] attention log-sum-exp
    let xMid: Buffer<Float>               // [N, C] residual after attention
    let gate, up: Buffer<Float>           // [N, F] (gate: gated MLPs only; up: before the activation)
    let rstd1, rstd2: Buffer<Float>       // [N·S] norm statistics, S = spec.normStats
    let qRaw, kRaw: Buffer<Float>         // [N, Q], [N, K] q and k before their norms (q/k norm only)
    let rstdQ, rstdK: Buffer<Float>       // [N·H], [N·G] (q/k norm only)
    let attnOut, mlpOut: Buffer<Float>    // [N, C] outputs of o and down before their norms (sandwich norms only)
    let rstd3, rstd4: Buffer<Float>       // [N·S] (sandwich norms only)
    /// The routing of the block's mixture of experts, set by the forward (a recomputed one too).
    var moe: SparseMoE.Saved?

    /// The buffers by name, each with its size: the one table allocation and the memory
    /// prediction read (llm.c's `fill_in_activation_sizes`, with names instead of positions).
    enum Slot: CaseIterable {
        case q, k, v, att, lse, xMid, gate, up, rstd1, rstd2, qRaw, kRaw, rstdQ, rstdK, attnOut, mlpOut, rstd3, rstd4

        /// Floats of this buffer for `n` rows (0 when the spec has no use for it).
        func floats(rows n: Int, spec s: DecoderSpec) -> Int {
            let qk = s.qkNorm ? 1 : 0, sw = s.sandwichNorms ? 1 : 0, st = s.normStats
            switch self {
            case .q, .att: return n * s.queryWidth
            case .k, .v: return n * s.kvWidth
            case .lse: return n * s.numHeads
            case .xMid: return n * s.hiddenSize
            case .gate: return s.mlp.isGated ? n * s.intermediateSize : 0
            case .up: return n * s.intermediateSize
            case .rstd1, .rstd2: return st * n
            case .qRaw: return qk * n * s.queryWidth
            case .kRaw: return qk * n * s.kvWidth
            case .rstdQ: return qk * n * s.numHeads
            case .rstdK: return qk * n * s.numKVHeads
            case .attnOut, .mlpOut: return sw * n * s.hiddenSize
            case .rstd3, .rstd4: return sw * st * n
            }
        }
    }

    /// Floats of every buffer for `n` rows.
    static func floats(rows n: Int, spec: DecoderSpec) -> Int {
        Slot.allCases.reduce(0) { $0 + $1.floats(rows: n, spec: spec) }
    }

    init(rows n: Int, spec: DecoderSpec) {
        func buffer(_ slot: Slot) -> Buffer<Float> { Buffer(count: slot.floats(rows: n, spec: spec)) }
        q = buffer(.q); k = buffer(.k); v = buffer(.v); att = buffer(.att); lse = buffer(.lse); xMid = buffer(.xMid)
        gate = buffer(.gate); up = buffer(.up); rstd1 = buffer(.rstd1); rstd2 = buffer(.rstd2)
        qRaw = buffer(.qRaw); kRaw = buffer(.kRaw); rstdQ = buffer(.rstdQ); rstdK = buffer(.rstdK)
        attnOut = buffer(.attnOut); mlpOut = buffer(.mlpOut); rstd3 = buffer(.rstd3); rstd4 = buffer(.rstd4)
    }
}

/// Buffers of a forward (and backward) pass over up to `rows` rows, kept on the model and reused.
final class DecoderWorkspace {
    enum Mode: Equatable {
        /// One residual buffer updated in place, one set of activations, no gradients.
        case inference
        /// The residual stream at every block's input, each block's activations (one shared set,
        /// recomputed in backward, under gradient checkpointing), and the backward buffers.
        case training(checkpointing: Bool)
    }

    let rows: Int
    let mode: Mode
    /// [N, C] each: the input of every block and the last one's output (training), or the one stream (inference).
    let residual: [Buffer<Float>]
    let layers: [DecoderActivations]
    let xn, h: Buffer<Float>                                // [N, C], [N, F] recomputed temporaries
    let xnBF16: Buffer<BF16Bits>                            // [N, C]
    let finalNormed, finalRstd: Buffer<Float>               // [N, C], [N·S]
    let dx, dxn: Buffer<Float>                              // [N, C]
    let dq, dk, dv, datt: Buffer<Float>                     // [N, Q], [N, K], [N, K], [N, Q]
    let dh, dgate, dup: Buffer<Float>                       // [N, F] (dgate: gated MLPs only)
    let dqRaw, dkRaw: Buffer<Float>                         // [N, Q], [N, K] (q/k norm only)
    let dOut: Buffer<Float>                                 // [N, C] ∂ of o's / down's output (sandwich norms only)
    let qkv, dqkv: Buffer<Float>                            // [N, Q + 2K] fused q/k/v product and its gradient

    /// The buffers after `layers` by name, each with its size (xnBF16 is counted in `byteCount`).
    enum Slot: CaseIterable {
        case xn, h, finalNormed, finalRstd, dx, dxn, dq, dk, dv, datt, dh, dgate, dup, dqRaw, dkRaw, dOut, qkv, dqkv

        /// Floats of this buffer for `n` rows in `mode` (0 when the mode or spec has no use for it).
        func floats(rows n: Int, spec s: DecoderSpec, mode: Mode) -> Int {
            let train = mode == .inference ? 0 : 1, qk = s.qkNorm ? train : 0, sw = s.sandwichNorms ? train : 0
            let c = s.hiddenSize, f = s.intermediateSize, q = s.queryWidth, k = s.kvWidth
            let fused = s.fusedQKV ? 1 : 0
            switch self {
            case .xn: return n * c
            case .h: return n * f
            case .finalNormed, .dx, .dxn: return train * n * c
            case .finalRstd: return train * s.normStats * n
            case .dq, .datt: return train * n * q
            case .dk, .dv: return train * n * k
            case .dh, .dup: return train * n * f
            case .dgate: return s.mlp.isGated ? train * n * f : 0
            case .dqRaw: return qk * n * q
            case .dkRaw: return qk * n * k
            case .dOut: return sw * n * c
            case .qkv: return fused * n * (q + 2 * k)
            case .dqkv: return fused * train * n * (q + 2 * k)
            }
        }
    }

    static func residualCount(spec: DecoderSpec, mode: Mode) -> Int { mode == .inference ? 1 : spec.numLayers + 1 }

    static func activationSets(spec: DecoderSpec, mode: Mode) -> Int {
        if case .training(checkpointing: false) = mode { return spec.numLayers }
        return 1
    }

    /// Bytes this workspace allocates for `n` rows.
    static func byteCount(rows n: Int, spec: DecoderSpec, mode: Mode) -> Int {
        var floats = residualCount(spec: spec, mode: mode) * n * spec.hiddenSize
        floats += activationSets(spec: spec, mode: mode) * DecoderActivations.floats(rows: n, spec: spec)
        floats += Slot.allCases.reduce(0) { $0 + $1.floats(rows: n, spec: spec, mode: mode) }
        return floats * 4 + n * spec.hiddenSize * 2
    }

    init(rows n: Int, spec: DecoderSpec, mode: Mode) {
        rows = n; self.mode = mode
        residual = (0..<Self.residualCount(spec: spec, mode: mode)).map { _ in Buffer(count: n * spec.hiddenSize) }
        layers = (0..<Self.activationSets(spec: spec, mode: mode)).map { _ in DecoderActivations(rows: n, spec: spec) }
        func buffer(_ slot: Slot) -> Buffer<Float> { Buffer(count: slot.floats(rows: n, spec: spec, mode: mode)) }
        xn = buffer(.xn); h = buffer(.h); finalNormed = buffer(.finalNormed); finalRstd = buffer(.finalRstd)
        dx = buffer(.dx); dxn = buffer(.dxn); dq = buffer(.dq); dk = buffer(.dk); dv = buffer(.dv); datt = buffer(.datt)
        dh = buffer(.dh); dgate = buffer(.dgate); dup = buffer(.dup); dqRaw = buffer(.dqRaw); dkRaw = buffer(.dkRaw)
        dOut = buffer(.dOut); qkv = buffer(.qkv); dqkv = buffer(.dqkv)
        xnBF16 = Buffer(count: n * spec.hiddenSize)
    }

    /// xn as bf16 when `weight` multiplies bf16 inputs at this size (converted once for the products sharing it).
    func sharedBF16(for weight: any LinearLayer, rows n: Int, channels c: Int) -> UnsafePointer<BF16Bits>? {
        guard weight.wantsBF16Input(rows: n) else { return nil }
        BFloat16.convert(xn.pointer, to: xnBF16.pointer, count: n * c)
        return UnsafePointer(xnBF16.pointer)
    }
}

/// The decoder block, once for inference and training:
/// `xMid = x + [norm](o(attention(rope(norm_q(q(xn))), rope(norm_k(k(xn))), v(xn))))`, `xn = norm(x)`;
/// `out = xMid + [norm](down(act(xn')))`, `xn' = norm(xMid)`, act = silu(gate)·up, gelu(gate)·up or
/// gelu(up); q, k, v from one fused product where the family has one; biases, q/k norms, rotary
/// embeddings and the bracketed sandwich norms where the spec has them.
extension DecoderModel {
    /// out [N, C] = norm(x [N, C]) with the spec's norm (RMSNorm, or LayerNorm with `bias`);
    /// `stats` [N·S] receives what backward needs.
    func normForward(out: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                     weight: Buffer<Float>, bias: Buffer<Float>?, rows n: Int) {
        switch spec.norm {
        case .rms(let eps):
            backend.rmsNormForward(out: out, rstd: stats, x: x, weight: weight.pointer, rows: n, channels: weight.count, eps: eps)
        case .layer(let eps):
            backend.layerNormForward(out: out, stats: stats, x: x, weight: weight.pointer, bias: bias!.pointer, rows: n,
                              channels: weight.count, eps: eps)
        }
    }

    /// Backward of `normForward` (frozen norm), accumulating into dx.
    func normBackward(dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
                      weight: Buffer<Float>, stats: UnsafePointer<Float>, rows n: Int) {
        switch spec.norm {
        case .rms:
            backend.rmsNormBackward(dx: dx, dweight: nil, dout: dout, x: x, weight: weight.pointer, rstd: stats, rows: n,
                             channels: weight.count)
        case .layer:
            backend.layerNormBackward(dx: dx, dweight: nil, dbias: nil, dout: dout, x: x, weight: weight.pointer, stats: stats,
                               rows: n, channels: weight.count)
        }
    }

    /// One block: out [N, C] = block(x [N, C]) (out may be x), saving `acts`. `recompute`: the
    /// forward that gradient checkpointing repeats before the block's backward, which needs the
    /// saved activations only: the MLP's last product (and the activation, which backward
    /// recomputes) is skipped and `out` is left as it is, unless sandwich norms need down's output.
    /// `context` goes to every linear of the block.
    func blockForward(_ li: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, acts a: DecoderActivations,
                      w: DecoderWorkspace, rows n: Int, attention: BlockAttention, rope: RoPE.Table?, context: PassContext,
                      recompute: Bool = false) {
        let s = spec, layer = layers[li]
        let c = s.hiddenSize, hq = s.numHeads, g = s.numKVHeads, d = s.headDim, f = s.intermediateSize
        let qd = s.queryWidth, kvd = s.kvWidth
        // Attention.
        normForward(out: w.xn.pointer, stats: a.rstd1.pointer, x: x, weight: layer.norm(.attention),
                    bias: layer.normBiases[.attention], rows: n)
        let qOut = s.qkNorm ? a.qRaw : a.q, kOut = s.qkNorm ? a.kRaw : a.k
        if s.fusedQKV {
            // [N, Q + 2K] = xn · Wqkvᵀ, then its column blocks q | k | v.
            let width = qd + 2 * kvd
            linear(.qkv, layer, y: w.qkv.pointer, x: w.xn.pointer, xBF16: w.sharedBF16(for: layer[.qkv], rows: n, channels: c),
                   rows: n, accumulate: false, context: context)
            for r in 0..<n {
                let row = w.qkv.pointer + r * width
                (qOut.pointer + r * qd).update(from: row, count: qd)
                (kOut.pointer + r * kvd).update(from: row + qd, count: kvd)
                (a.v.pointer + r * kvd).update(from: row + qd + kvd, count: kvd)
            }
        } else {
            let xb = w.sharedBF16(for: layer[.q], rows: n, channels: c)
            scratch.sharingInput(w.xn.pointer) {
                linear(.q, layer, y: qOut.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, context: context)   // [N, Q]
                linear(.k, layer, y: kOut.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, context: context)   // [N, K]
                linear(.v, layer, y: a.v.pointer, x: w.xn.pointer, xBF16: xb, rows: n, accumulate: false, context: context)    // [N, K]
            }
        }
        if s.qkNorm {
            // Per head (rows N·H of D), or over the whole projection (rows N of H·D: OLMoE).
            let whole = s.qkNormOverProjection
            backend.rmsNormForward(out: a.q.pointer, rstd: a.rstdQ.pointer, x: a.qRaw.pointer, weight: layer.norm(.q).pointer,
                            rows: whole ? n : n * hq, channels: whole ? qd : d, eps: s.normEps)
            backend.rmsNormForward(out: a.k.pointer, rstd: a.rstdK.pointer, x: a.kRaw.pointer, weight: layer.norm(.k).pointer,
                            rows: whole ? n : n * g, channels: whole ? kvd : d, eps: s.normEps)
        }
        if let rope {
            backend.ropeApply(s.ropes[li], x: a.q.pointer, heads: hq, table: rope, inverse: false)
            backend.ropeApply(s.ropes[li], x: a.k.pointer, heads: g, table: rope, inverse: false)
        }
        let window = s.slidingWindows[li]
        switch attention {
        case .cached(let segments):
            var parts: [AttentionSegment] = []
            for sg in segments {
                sg.cache.store(layer: li, k: a.k.pointer + sg.start * g * d, v: a.v.pointer + sg.start * g * d, rows: sg.count)
                parts.append(AttentionSegment(rowStart: sg.start, rowCount: sg.count, pastLength: sg.cache.length,
                                              keys: sg.cache.keys[li].pointer, values: sg.cache.values[li].pointer,
                                              capacity: sg.cache.capacity))
            }
            backend.attentionForward(out: a.att.pointer, q: a.q.pointer, segments: parts, heads: hq, kvHeads: g, headDim: d,
                                     scale: s.attentionScale, window: window)
        case .packed(let sequences):
            backend.attentionTrainingForward(out: a.att.pointer, logsumexp: a.lse.pointer, q: a.q.pointer, k: a.k.pointer,
                                             v: a.v.pointer, sequences: sequences, heads: hq, kvHeads: g, headDim: d,
                                             scale: s.attentionScale, window: window)
        }
        if s.sandwichNorms {
            // xMid = x + norm(att·Woᵀ)
            linear(.o, layer, y: a.attnOut.pointer, x: a.att.pointer, xBF16: nil, rows: n, accumulate: false, context: context)
            normForward(out: a.xMid.pointer, stats: a.rstd3.pointer, x: a.attnOut.pointer, weight: layer.norm(.postAttention),
                        bias: layer.normBiases[.postAttention], rows: n)
            backend.add(a.xMid.pointer, x, count: n * c)
        } else {
            a.xMid.pointer.update(from: x, count: n * c)
            linear(.o, layer, y: a.xMid.pointer, x: a.att.pointer, xBF16: nil, rows: n, accumulate: true, context: context)   // xMid += att·Woᵀ
        }
        // MLP.
        normForward(out: w.xn.pointer, stats: a.rstd2.pointer, x: a.xMid.pointer, weight: layer.norm(.mlp),
                    bias: layer.normBiases[.mlp], rows: n)
        if let moe = layer.moe {
            // out = xMid + the experts' mixture of xn; a recomputed forward needs only the routing.
            if recompute {
                a.moe = moe.route(x: w.xn.pointer, rows: n, scratch: scratch, context: context)
                return
            }
            out.update(from: a.xMid.pointer, count: n * c)
            a.moe = moe.forward(out: out, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch, context: context)
            return
        }
        let xb2 = w.sharedBF16(for: layer[.up], rows: n, channels: c)
        scratch.sharingInput(w.xn.pointer) {
            if s.mlp.isGated {
                linear(.gate, layer, y: a.gate.pointer, x: w.xn.pointer, xBF16: xb2, rows: n, accumulate: false, context: context)  // [N, F]
            }
            linear(.up, layer, y: a.up.pointer, x: w.xn.pointer, xBF16: xb2, rows: n, accumulate: false, context: context)      // [N, F]
        }
        if recompute && !s.sandwichNorms { return }
        activation(h: w.h.pointer, gate: a.gate.pointer, up: a.up.pointer, count: n * f)
        if s.sandwichNorms {
            // out = xMid + norm(h·Wdᵀ)
            linear(.down, layer, y: a.mlpOut.pointer, x: w.h.pointer, xBF16: nil, rows: n, accumulate: false, context: context)
            normForward(out: out, stats: a.rstd4.pointer, x: a.mlpOut.pointer, weight: layer.norm(.postMLP),
                        bias: layer.normBiases[.postMLP], rows: n)
            backend.add(out, a.xMid.pointer, count: n * c)
        } else {
            out.update(from: a.xMid.pointer, count: n * c)
            linear(.down, layer, y: out, x: w.h.pointer, xBF16: nil, rows: n, accumulate: true, context: context)   // out += h·Wdᵀ
        }
    }

    /// h = act(gate) · up, or act(up) for a plain MLP.
    @inline(__always)
    private func activation(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                            count: Int) {
        switch spec.mlp {
        case .swiGLU: backend.swiGLUForward(h: h, gate: gate, up: up, count: count)
        case .geGLU: backend.geGLUForward(h: h, gate: gate, up: up, count: count)
        case .gelu(let a): backend.geluForward(y: h, x: up, count: count, approximation: a)
        }
    }

    /// y (+)= x · Wᵀ (+ bias) for one of the block's linears.
    @inline(__always)
    private func linear(_ l: DecoderLinear, _ layer: DecoderLayer, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                        xBF16: UnsafePointer<BF16Bits>?, rows n: Int, accumulate: Bool, context: PassContext) {
        let lin = layer[l]
        lin.forward(y: y, x: x, xBF16: xBF16, rows: n, accumulate: accumulate, scratch: scratch, context: context)
        if let b = layer.biases[l] { backend.biasForward(y: y, bias: b.pointer, rows: n, features: lin.outFeatures) }
    }

    /// Backward of `blockForward` (over packed sequences): on entry w.dx holds ∂loss/∂out, on exit
    /// ∂loss/∂x; the block's adapters add their parameter gradients. Biases are frozen and pass
    /// gradients through unchanged. `context` is the forward's. `auxGradient` [E]: ∂(weighted load-balancing
    /// loss)/∂p of every row's router probabilities (`MoERouting.LoadBalancingTally`), nil without that loss.
    func blockBackward(_ li: Int, x: UnsafePointer<Float>, acts a: DecoderActivations, w: DecoderWorkspace,
                       rows n: Int, sequences: [Range<Int>], rope: RoPE.Table?, context: PassContext, auxGradient: [Float]? = nil) {
        let s = spec, layer = layers[li]
        let c = s.hiddenSize, hq = s.numHeads, g = s.numKVHeads, d = s.headDim
        let f = s.intermediateSize, qd = s.queryWidth, kvd = s.kvWidth
        // MLP: recompute xn = norm(xMid) and h; dh = dx·Wdown; dgate, dup; dxn; dx += norm backward.
        normForward(out: w.xn.pointer, stats: nil, x: a.xMid.pointer, weight: layer.norm(.mlp),
                    bias: layer.normBiases[.mlp], rows: n)
        if let moe = layer.moe {
            guard let saved = a.moe else { preconditionFailure("block \(li): backward without the forward's routing") }
            var auxDLogits: Buffer<Float>?
            if let auxGradient {
                let d = Buffer<Float>(count: n * saved.routes.experts)
                MoERouting.loadBalancingBackward(saved.routes, dProbabilities: auxGradient, dLogits: d.pointer, accumulate: false)
                auxDLogits = d
            }
            moe.backward(dx: w.dxn.pointer, dOut: w.dx.pointer, x: w.xn.pointer, rows: n, saved: saved, accumulate: false,
                         routerDLogits: auxDLogits.map { UnsafePointer($0.pointer) }, scratch: scratch, context: context)
            withExtendedLifetime(auxDLogits) {}
        } else {
            activation(h: w.h.pointer, gate: a.gate.pointer, up: a.up.pointer, count: n * f)
            var dDown = UnsafePointer(w.dx.pointer)   // ∂loss/∂(down's output)
            if s.sandwichNorms {
                w.dOut.pointer.update(repeating: 0, count: n * c)
                normBackward(dx: w.dOut.pointer, dout: w.dx.pointer, x: a.mlpOut.pointer, weight: layer.norm(.postMLP),
                             stats: a.rstd4.pointer, rows: n)
                dDown = UnsafePointer(w.dOut.pointer)
            }
            layer[.down].backward(dx: w.dh.pointer, dy: dDown, x: w.h.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            w.dup.pointer.update(repeating: 0, count: n * f)
            switch s.mlp {
            case .swiGLU:
                w.dgate.pointer.update(repeating: 0, count: n * f)
                backend.swiGLUBackward(dgate: w.dgate.pointer, dup: w.dup.pointer, dh: w.dh.pointer, gate: a.gate.pointer,
                                up: a.up.pointer, count: n * f)
            case .geGLU:
                w.dgate.pointer.update(repeating: 0, count: n * f)
                backend.geGLUBackward(dgate: w.dgate.pointer, dup: w.dup.pointer, dh: w.dh.pointer, gate: a.gate.pointer,
                               up: a.up.pointer, count: n * f)
            case .gelu(let approximation):
                backend.geluBackward(dx: w.dup.pointer, dy: w.dh.pointer, x: a.up.pointer, count: n * f, approximation: approximation)
            }
            if s.mlp.isGated {
                layer[.gate].backward(dx: w.dxn.pointer, dy: w.dgate.pointer, x: w.xn.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            }
            layer[.up].backward(dx: w.dxn.pointer, dy: w.dup.pointer, x: w.xn.pointer, rows: n, accumulate: s.mlp.isGated,
                                scratch: scratch, context: context)
        }
        normBackward(dx: w.dx.pointer, dout: w.dxn.pointer, x: a.xMid.pointer, weight: layer.norm(.mlp),
                     stats: a.rstd2.pointer, rows: n)
        // Attention: datt = dx·Wo; attention backward; un-rotate dq, dk; q/k norm backward; dxn; dx += norm backward.
        var dO = UnsafePointer(w.dx.pointer)   // ∂loss/∂(o's output)
        if s.sandwichNorms {
            w.dOut.pointer.update(repeating: 0, count: n * c)
            normBackward(dx: w.dOut.pointer, dout: w.dx.pointer, x: a.attnOut.pointer, weight: layer.norm(.postAttention),
                         stats: a.rstd3.pointer, rows: n)
            dO = UnsafePointer(w.dOut.pointer)
        }
        layer[.o].backward(dx: w.datt.pointer, dy: dO, x: a.att.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        w.dq.pointer.update(repeating: 0, count: n * qd)
        w.dk.pointer.update(repeating: 0, count: n * kvd)
        w.dv.pointer.update(repeating: 0, count: n * kvd)
        backend.attentionTrainingBackward(dq: w.dq.pointer, dk: w.dk.pointer, dv: w.dv.pointer, dout: w.datt.pointer,
                                          out: a.att.pointer, logsumexp: a.lse.pointer, q: a.q.pointer, k: a.k.pointer,
                                          v: a.v.pointer, sequences: sequences, heads: hq, kvHeads: g, headDim: d,
                                          scale: s.attentionScale, window: s.slidingWindows[li])
        if let rope {
            backend.ropeBackward(s.ropes[li], dx: w.dq.pointer, heads: hq, table: rope)
            backend.ropeBackward(s.ropes[li], dx: w.dk.pointer, heads: g, table: rope)
        }
        var dqOut = w.dq, dkOut = w.dk
        if s.qkNorm {
            w.dqRaw.pointer.update(repeating: 0, count: n * qd)
            w.dkRaw.pointer.update(repeating: 0, count: n * kvd)
            let whole = s.qkNormOverProjection
            backend.rmsNormBackward(dx: w.dqRaw.pointer, dweight: nil, dout: w.dq.pointer, x: a.qRaw.pointer,
                             weight: layer.norm(.q).pointer, rstd: a.rstdQ.pointer, rows: whole ? n : n * hq, channels: whole ? qd : d)
            backend.rmsNormBackward(dx: w.dkRaw.pointer, dweight: nil, dout: w.dk.pointer, x: a.kRaw.pointer,
                             weight: layer.norm(.k).pointer, rstd: a.rstdK.pointer, rows: whole ? n : n * g, channels: whole ? kvd : d)
            dqOut = w.dqRaw; dkOut = w.dkRaw
        }
        normForward(out: w.xn.pointer, stats: nil, x: x, weight: layer.norm(.attention), bias: layer.normBiases[.attention],
                    rows: n)
        if s.fusedQKV {
            let width = qd + 2 * kvd
            for r in 0..<n {
                let row = w.dqkv.pointer + r * width
                row.update(from: dqOut.pointer + r * qd, count: qd)
                (row + qd).update(from: dkOut.pointer + r * kvd, count: kvd)
                (row + qd + kvd).update(from: w.dv.pointer + r * kvd, count: kvd)
            }
            layer[.qkv].backward(dx: w.dxn.pointer, dy: w.dqkv.pointer, x: w.xn.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        } else {
            layer[.q].backward(dx: w.dxn.pointer, dy: dqOut.pointer, x: w.xn.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            layer[.k].backward(dx: w.dxn.pointer, dy: dkOut.pointer, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch, context: context)
            layer[.v].backward(dx: w.dxn.pointer, dy: w.dv.pointer, x: w.xn.pointer, rows: n, accumulate: true, scratch: scratch, context: context)
        }
        normBackward(dx: w.dx.pointer, dout: w.dxn.pointer, x: x, weight: layer.norm(.attention), stats: a.rstd1.pointer, rows: n)
    }
}
