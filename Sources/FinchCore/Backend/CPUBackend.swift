import CFinchKernels

/// Finch's CPU kernels behind `ComputeBackend`: each op is the static kernel it names (SIMD C
/// kernels, oneDNN / OpenBLAS GEMMs, `Parallel` threads), called exactly as the model code called
/// it before the seam, so nothing is slower or computed differently.
public final class CPUBackend: ComputeBackend {
    public static let shared = CPUBackend()
    private init() {}

    public var kind: BackendKind { .cpu }

    public func makeBuffer(count: Int) -> Buffer<Float> { Buffer(count: count) }

    public func matmul(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, aTransposed: Bool,
                       b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                       accumulate: Bool) {
        GEMM.f32(m: m, n: n, k: k, a: a, lda: lda, aTransposed: aTransposed, b: b, ldb: ldb, bTransposed: bTransposed,
                 c: c, ldc: ldc, accumulate: accumulate)
    }

    public func linearForward(_ w: LinearWeight, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                              xBF16: UnsafePointer<BF16Bits>?, rows: Int, accumulate: Bool, scratch: Scratch) {
        w.forward(y: y, x: x, xBF16: xBF16, rows: rows, accumulate: accumulate, scratch: scratch)
    }

    public func linearBackwardInput(_ w: LinearWeight, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int,
                                    accumulate: Bool, scratch: Scratch) {
        w.backwardInput(dx: dx, dy: dy, rows: rows, accumulate: accumulate, scratch: scratch)
    }

    public func rmsNormForward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float) {
        RMSNorm.forward(out: out, rstd: rstd, x: x, weight: weight, rows: rows, channels: channels, eps: eps)
    }

    public func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                rows: Int, channels: Int) {
        RMSNorm.backward(dx: dx, dweight: dweight, dout: dout, x: x, weight: weight, rstd: rstd, rows: rows, channels: channels)
    }

    public func layerNormForward(out: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float) {
        LayerNorm.forward(out: out, stats: stats, x: x, weight: weight, bias: bias, rows: rows, channels: channels, eps: eps)
    }

    public func layerNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                                  dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                  weight: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int, channels: Int) {
        LayerNorm.backward(dx: dx, dweight: dweight, dbias: dbias, dout: dout, x: x, weight: weight, stats: stats,
                           rows: rows, channels: channels)
    }

    public func ropeApply(_ rope: RoPE, x: UnsafeMutablePointer<Float>, heads: Int, table: RoPE.Table, inverse: Bool) {
        rope.apply(x, heads: heads, table: table, inverse: inverse)
    }

    public func swiGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        SwiGLU.forward(h: h, gate: gate, up: up, count: count)
    }

    public func swiGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                               gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        SwiGLU.backward(dgate: dgate, dup: dup, dh: dh, gate: gate, up: up, count: count)
    }

    public func geGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        GeGLU.forward(h: h, gate: gate, up: up, count: count)
    }

    public func geGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                              gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        GeGLU.backward(dgate: dgate, dup: dup, dh: dh, gate: gate, up: up, count: count)
    }

    public func geluForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, approximation: GELU.Approximation) {
        GELU.forward(y: y, x: x, count: count, approximation: approximation)
    }

    public func geluBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                             approximation: GELU.Approximation) {
        GELU.backward(dx: dx, dy: dy, x: x, count: count, approximation: approximation)
    }

    public func activationForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, activation: Activation) {
        Activation.forward(activation, y: y, x: x, count: count)
    }

    public func activationBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                                   activation: Activation) {
        Activation.backward(activation, dx: dx, dy: dy, x: x, count: count)
    }

    public func multiply(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 1) { r in for i in r { out[i] = a[i] * b[i] } }
    }

    public func scaleColumns(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, scale: UnsafePointer<Float>, rows: Int,
                             columns o: Int, accumulate: Bool) {
        Parallel.forEachRange(rows, costPerItem: o) { range in
            for row in range {
                let src = x + row * o, dst = out + row * o
                if accumulate { for c in 0..<o { dst[c] += scale[c] * src[c] } } else { for c in 0..<o { dst[c] = scale[c] * src[c] } }
            }
        }
    }

    /// Rows summed in order per column, in f32 (as the DoRA code did before it moved here).
    public func columnDots(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows: Int,
                           columns o: Int) {
        Parallel.forEachRange(o, costPerItem: rows) { range in
            for c in range {
                var s: Float = 0
                for row in 0..<rows { s += a[row * o + c] * b[row * o + c] }
                out[c] += s
            }
        }
    }

    public func attentionForward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, segments: [AttentionSegment],
                                 heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int?) {
        Attention.forward(out: out, q: q, segments: segments, heads: heads, kvHeads: kvHeads, headDim: headDim,
                          scale: scale, window: window)
    }

    public func attentionTrainingForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>,
                                         q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                         sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim: Int, scale: Float,
                                         window: Int?) {
        Attention.trainingForward(out: out, logsumexp: logsumexp, q: q, k: k, v: v, sequences: sequences, heads: heads,
                                  kvHeads: kvHeads, headDim: headDim, scale: scale, window: window)
    }

    public func attentionTrainingBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                          dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                          logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                          v: UnsafePointer<Float>, sequences: [Range<Int>], heads: Int, kvHeads: Int,
                                          headDim: Int, scale: Float, window: Int?) {
        Attention.trainingBackward(dq: dq, dk: dk, dv: dv, dout: dout, out: out, logsumexp: logsumexp, q: q, k: k, v: v,
                                   sequences: sequences, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                                   window: window)
    }

    public func biasedAttentionForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>?,
                                       q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, shape: BiasedAttention.Shape) {
        BiasedAttention.forward(out: out, logsumexp: logsumexp, q: q, k: k, v: v, bias: bias, shape: shape)
    }

    public func biasedAttentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                        dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                        logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                        v: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape: BiasedAttention.Shape) {
        BiasedAttention.backward(dq: dq, dk: dk, dv: dv, dout: dout, out: out, logsumexp: logsumexp, q: q, k: k, v: v,
                                 bias: bias, shape: shape)
    }

    public func crossEntropyForward(x: UnsafePointer<Float>, head: LinearWeight, targets: UnsafePointer<Int32>, rows: Int,
                                    losses: UnsafeMutablePointer<Float>?, scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        try CrossEntropy.linearForward(x: x, head: head, targets: targets, rows: rows, losses: losses, scratch: scratch)
    }

    public func crossEntropyForwardBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight,
                                            targets: UnsafePointer<Int32>, rows: Int, scale: Float, losses: UnsafeMutablePointer<Float>?,
                                            headGrad: UnsafeMutablePointer<Float>?,
                                            scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        try CrossEntropy.linearForwardBackward(dx: dx, x: x, head: head, targets: targets, rows: rows, scale: scale, losses: losses,
                                               headGrad: headGrad, scratch: scratch)
    }

    public func dropout(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, p: Float, key: UInt64,
                        accumulate: Bool) {
        if accumulate { Dropout.applyAdding(out: out, x: x, count: count, p: p, key: key) }
        else { Dropout.apply(out: out, x: x, count: count, p: p, key: key) }
    }

    public func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        Residual.add(y, x, count: count)
    }

    public func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
        for e in 0..<count { x[e] *= s }
    }

    public func biasForward(y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, features: Int) {
        Bias.forward(y: y, bias: bias, rows: rows, features: features)
    }

    public func biasBackward(dbias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, features: Int) {
        Bias.backward(dbias: dbias, dy: dy, rows: rows, features: features)
    }

    public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var ss = 0.0
        for i in 0..<count { ss += Double(x[i]) * Double(x[i]) }
        return ss
    }

    public func adamWUpdate(value v: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, expAvg m: UnsafeMutablePointer<Float>,
                            expAvgSq s: UnsafeMutablePointer<Float>, count: Int, step h: AdamWStep) {
        Parallel.forEachRange(count, costPerItem: 16) { range in
            for i in range {
                if h.decay != 1 { v[i] *= h.decay }
                m[i] += h.oneMinusBeta1 * (g[i] - m[i])
                s[i] = s[i] * h.beta2 + h.oneMinusBeta2 * g[i] * g[i]
                v[i] -= h.stepSize * (m[i] / (s[i].squareRoot() / h.bc2 + h.epsilon))
            }
        }
    }

    public func adamW8bitUpdate(value x: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, moments: AdamW8bitMoments,
                                count n: Int, step h: AdamW8bitStep) {
        switch moments {
        case let .full(m, v):
            Parallel.forEachRange(n, costPerItem: 16) { range in
                for i in range {
                    m[i] = (m[i] * h.beta1).addingProduct(g[i], h.oneMinusBeta1)
                    v[i] = (v[i] * h.beta2).addingProduct(h.oneMinusBeta2 * g[i], g[i])
                    if let decay = h.decay { x[i] *= decay }
                    x[i] = x[i].addingProduct(m[i] / (v[i].squareRoot() + h.fullEpsilon), h.fullStepSize)
                }
            }
        case let .blockwise(mq, ma, vq, va, bs):
            let blocks = (n + bs - 1) / bs
            let sCode = DynamicMap.signed, uCode = DynamicMap.unsigned
            BlockwiseCodes.signedLUT.withUnsafeBufferPointer { sl in
                BlockwiseCodes.unsignedLUT.withUnsafeBufferPointer { ul in
                    Parallel.forEachRange(blocks, costPerItem: bs * 24) { range in
                        let mBlock = UnsafeMutablePointer<Float>.allocate(capacity: bs), vBlock = UnsafeMutablePointer<Float>.allocate(capacity: bs)
                        defer { mBlock.deallocate(); vBlock.deallocate() }
                        for b in range {
                            let start = b * bs, count = min(bs, n - start)
                            let am = ma[b], av = va[b]
                            for j in 0..<count {
                                let i = start + j
                                var m = sCode[Int(mq[i])] * am, v = uCode[Int(vq[i])] * av
                                m = (m * h.beta1).addingProduct(g[i], h.oneMinusBeta1)
                                v = (v * h.beta2).addingProduct(h.oneMinusBeta2 * g[i], g[i])
                                if let decay = h.decay { x[i] *= decay }
                                x[i] += (h.stepSize * m) / (v.squareRoot() / h.bc2 + h.epsilon)
                                mBlock[j] = m; vBlock[j] = v
                            }
                            BlockwiseCodes.quantizeBlock(mBlock, count: count, lut: sl.baseAddress!, codes: mq + start, absmax: &ma[b])
                            BlockwiseCodes.quantizeBlock(vBlock, count: count, lut: ul.baseAddress!, codes: vq + start, absmax: &va[b])
                        }
                    }
                }
            }
        }
    }
}
