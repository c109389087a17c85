import Foundation

// Dimension letters: M rows of a product, N columns, K the summed dimension; R rows (tokens),
// C channels, H query heads, G key/value heads, D head dim, F features of an elementwise op,
// O output features, I input features, V vocabulary.

/// Every op of `ComputeBackend` written from its definition: plain Swift loops, sums and
/// intermediate values in f64, one thread, no SIMD, no BLAS. Results are rounded to f32 where
/// they are stored. bf16 and quantized weights multiply the values the CPU path multiplies (the
/// operand rounded to bf16 where the CPU path rounds it; a quantized weight dequantized, and
/// rounded to bf16 for bf16 compute), then exactly in f64, so the two backends stay comparable.
/// The CPU kernels are checked against it op by op and model by model (llm.c keeps such a
/// reference beside each GPU kernel). Slow by design: for tests and tiny checkpoints.
public final class ReferenceBackend: ComputeBackend {
    public static let shared = ReferenceBackend()
    private init() {}

    public var kind: BackendKind { .reference }

    public func makeBuffer(count: Int) -> Buffer<Float> { Buffer(count: count) }

    // MARK: Matrix products

    /// Element (i, j) of op(A) or op(B) stored row-major with leading dimension `ld`.
    @inline(__always)
    private static func element(_ p: UnsafePointer<Float>, _ i: Int, _ j: Int, ld: Int, transposed: Bool) -> Double {
        Double(transposed ? p[j * ld + i] : p[i * ld + j])
    }

    public func matmul(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, aTransposed: Bool,
                       b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                       accumulate: Bool) {
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<k {
                    s += Self.element(a, i, l, ld: lda, transposed: aTransposed) * Self.element(b, l, j, ld: ldb, transposed: bTransposed)
                }
                let dst = c + i * ldc + j
                dst.pointee = Float(accumulate ? Double(dst.pointee) + s : s)
            }
        }
    }

    /// W [O, I] as the values its products multiply, and whether the other operand is rounded to
    /// bf16 first: f32 as stored; bf16 widened exactly (the input rounded); quantized dequantized
    /// (and, for bf16 compute, rounded to bf16 with the input).
    private func operands(_ w: LinearWeight) -> (values: Buffer<Float>, roundInput: Bool) {
        switch w.storage {
        case .f32(let b): return (b, false)
        case .bf16: return (w.floatValues(), true)
        case .quantized(let q, let compute):
            let f = Buffer<Float>(uninitializedCount: w.outFeatures * w.inFeatures)
            q.dequantize(into: f.pointer)
            if compute == .bf16 { for e in 0..<f.count { f[e] = Self.bf16(f[e]) } }
            return (f, compute == .bf16)
        }
    }

    /// x rounded to the nearest bf16 (ties to even), as f32.
    @inline(__always)
    static func bf16(_ x: Float) -> Float { BFloat16.toFloat(BFloat16.from(x)) }

    /// `m · k` values of `x`, rounded to bf16 when `round` (the operand a bf16 product multiplies).
    private static func operand(_ x: UnsafePointer<Float>, count: Int, round: Bool) -> Buffer<Float> {
        let out = Buffer<Float>(copying: x, count: count)
        if round { for e in 0..<count { out[e] = bf16(out[e]) } }
        return out
    }

    public func linearForward(_ w: LinearWeight, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                              xBF16: UnsafePointer<BF16Bits>?, rows m: Int, accumulate: Bool, scratch: Scratch) {
        let o = w.outFeatures, i = w.inFeatures
        let (values, roundInput) = operands(w)
        let a = Self.operand(x, count: m * i, round: roundInput)
        // y [M, O] (+)= x [M, I] · Wᵀ
        matmul(m: m, n: o, k: i, a: a.pointer, lda: i, aTransposed: false, b: values.pointer, ldb: i, bTransposed: true,
               c: y, ldc: o, accumulate: accumulate)
    }

    public func linearBackwardInput(_ w: LinearWeight, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows m: Int,
                                    accumulate: Bool, scratch: Scratch) {
        let o = w.outFeatures, i = w.inFeatures
        let (values, roundInput) = operands(w)
        let a = Self.operand(dy, count: m * o, round: roundInput)
        // dx [M, I] (+)= dy [M, O] · W
        matmul(m: m, n: i, k: o, a: a.pointer, lda: o, aTransposed: false, b: values.pointer, ldb: i, bTransposed: false,
               c: dx, ldc: i, accumulate: accumulate)
    }

    // MARK: Norms

    public func rmsNormForward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, rows: Int, channels c: Int, eps: Float) {
        for r in 0..<rows {
            let xr = x + r * c
            var ss = 0.0
            for i in 0..<c { ss += Double(xr[i]) * Double(xr[i]) }
            let s = 1 / (ss / Double(c) + Double(eps)).squareRoot()
            rstd?[r] = Float(s)
            for i in 0..<c { out[r * c + i] = Float(Double(weight[i]) * Double(xr[i]) * s) }
        }
    }

    /// With s = rstd and g = weight · dout: dx += s·g − x·s³·(g·x)/C.
    public func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                rows: Int, channels c: Int) {
        var dw = [Double](repeating: 0, count: c)
        for r in 0..<rows {
            let xr = x + r * c, dr = dout + r * c
            let s = Double(rstd[r])
            var gx = 0.0
            for i in 0..<c { gx += Double(weight[i]) * Double(dr[i]) * Double(xr[i]) }
            for i in 0..<c {
                let g = Double(weight[i]) * Double(dr[i])
                dx[r * c + i] = Float(Double(dx[r * c + i]) + s * g - Double(xr[i]) * s * s * s * gx / Double(c))
                dw[i] += Double(dr[i]) * Double(xr[i]) * s
            }
        }
        if let dweight { for i in 0..<c { dweight[i] = Float(Double(dweight[i]) + dw[i]) } }
    }

    public func layerNormForward(out: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, channels c: Int, eps: Float) {
        for r in 0..<rows {
            let xr = x + r * c
            var sum = 0.0
            for i in 0..<c { sum += Double(xr[i]) }
            let mean = sum / Double(c)
            var ss = 0.0
            for i in 0..<c { let d = Double(xr[i]) - mean; ss += d * d }
            let s = 1 / (ss / Double(c) + Double(eps)).squareRoot()
            if let stats { stats[2 * r] = Float(mean); stats[2 * r + 1] = Float(s) }
            for i in 0..<c { out[r * c + i] = Float((Double(xr[i]) - mean) * s * Double(weight[i]) + Double(bias[i])) }
        }
    }

    /// With x̂ = (x − mean)·s and g = weight · dout: dx += s·(g − mean(g) − x̂·mean(g·x̂)).
    public func layerNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                                  dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                  weight: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int, channels c: Int) {
        var dw = [Double](repeating: 0, count: c), db = [Double](repeating: 0, count: c)
        for r in 0..<rows {
            let xr = x + r * c, dr = dout + r * c
            let mean = Double(stats[2 * r]), s = Double(stats[2 * r + 1])
            var gMean = 0.0, gxMean = 0.0
            for i in 0..<c {
                let g = Double(weight[i]) * Double(dr[i]), xh = (Double(xr[i]) - mean) * s
                gMean += g; gxMean += g * xh
                dw[i] += Double(dr[i]) * xh; db[i] += Double(dr[i])
            }
            gMean /= Double(c); gxMean /= Double(c)
            for i in 0..<c {
                let g = Double(weight[i]) * Double(dr[i]), xh = (Double(xr[i]) - mean) * s
                dx[r * c + i] = Float(Double(dx[r * c + i]) + s * (g - gMean - xh * gxMean))
            }
        }
        if let dweight { for i in 0..<c { dweight[i] = Float(Double(dweight[i]) + dw[i]) } }
        if let dbias { for i in 0..<c { dbias[i] = Float(Double(dbias[i]) + db[i]) } }
    }

    // MARK: Rotary embedding

    /// (x1, x2) ← (x1·cos − x2·sin, x2·cos + x1·sin) for pairs (i, i + D/2), the table's f32 angles.
    public func ropeApply(_ rope: RoPE, x: UnsafeMutablePointer<Float>, heads: Int, table: RoPE.Table, inverse: Bool) {
        let d = rope.headDim, half = d / 2
        let sign = inverse ? -1.0 : 1.0
        for n in 0..<table.rows {
            for h in 0..<heads {
                let v = x + (n * heads + h) * d
                for i in 0..<half {
                    let x1 = Double(v[i]), x2 = Double(v[i + half])
                    let c = Double(table.cos[n * half + i]), s = sign * Double(table.sin[n * half + i])
                    v[i] = Float(x1 * c - x2 * s)
                    v[i + half] = Float(x2 * c + x1 * s)
                }
            }
        }
    }

    // MARK: Activations

    @inline(__always) private static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// gelu_tanh(x) = x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³))) and its derivative.
    private static func geluTanh(_ x: Double) -> (value: Double, derivative: Double) {
        let k = (2 / Double.pi).squareRoot()
        let t = Foundation.tanh(k * (x + 0.044715 * x * x * x))
        return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
    }

    /// gelu_erf(x) = x · Φ(x) and its derivative Φ(x) + x·φ(x).
    private static func geluErf(_ x: Double) -> (value: Double, derivative: Double) {
        let cdf = 0.5 * (1 + Foundation.erf(x / 2.0.squareRoot()))
        let pdf = Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
        return (x * cdf, cdf + x * pdf)
    }

    private static func gelu(_ x: Double, _ a: GELU.Approximation) -> (value: Double, derivative: Double) {
        switch a { case .tanh: geluTanh(x); case .erf: geluErf(x) }
    }

    public func swiGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = Double(gate[i])
            h[i] = Float(g * Self.sigmoid(g) * Double(up[i]))
        }
    }

    /// silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
    public func swiGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                               gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = Double(gate[i]), s = Self.sigmoid(g), d = Double(dh[i])
            dgate[i] = Float(Double(dgate[i]) + d * Double(up[i]) * s * (1 + g * (1 - s)))
            dup[i] = Float(Double(dup[i]) + d * g * s)
        }
    }

    public func geGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { h[i] = Float(Self.geluTanh(Double(gate[i])).value * Double(up[i])) }
    }

    public func geGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                              gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let (v, dv) = Self.geluTanh(Double(gate[i])), d = Double(dh[i])
            dgate[i] = Float(Double(dgate[i]) + d * Double(up[i]) * dv)
            dup[i] = Float(Double(dup[i]) + d * v)
        }
    }

    public func geluForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, approximation: GELU.Approximation) {
        for i in 0..<count { y[i] = Float(Self.gelu(Double(x[i]), approximation).value) }
    }

    public func geluBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                             approximation: GELU.Approximation) {
        for i in 0..<count {
            dx[i] = Float(Double(dx[i]) + Double(dy[i]) * Self.gelu(Double(x[i]), approximation).derivative)
        }
    }

    /// act(x) and act′(x) in f64 (GELU as `gelu(_:_:)`).
    static func activation(_ x: Double, _ a: Activation) -> (value: Double, derivative: Double) {
        switch a {
        case .gelu(let approx): return gelu(x, approx)
        case .relu: return (max(x, 0), x > 0 ? 1 : 0)
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return (x * s, s * (1 + x * (1 - s)))
        }
    }

    public func activationForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, activation: Activation) {
        for i in 0..<count { y[i] = Float(Self.activation(Double(x[i]), activation).value) }
    }

    public func activationBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                                   activation: Activation) {
        for i in 0..<count { dx[i] = Float(Double(dx[i]) + Double(dy[i]) * Self.activation(Double(x[i]), activation).derivative) }
    }

    public func multiply(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] * b[i] }
    }

    public func scaleColumns(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, scale: UnsafePointer<Float>, rows: Int,
                             columns o: Int, accumulate: Bool) {
        for row in 0..<rows {
            for c in 0..<o {
                let v = Double(scale[c]) * Double(x[row * o + c])
                out[row * o + c] = Float(accumulate ? Double(out[row * o + c]) + v : v)
            }
        }
    }

    public func columnDots(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows: Int,
                           columns o: Int) {
        for c in 0..<o {
            var s = 0.0
            for row in 0..<rows { s += Double(a[row * o + c]) * Double(b[row * o + c]) }
            out[c] = Float(Double(out[c]) + s)
        }
    }

    // MARK: Attention

    /// out [D] = Σ_j p_j · v_j with p = softmax(scores) over `keys` keys, in f64; returns log Σ e^score.
    /// `score(j)` and `value(j)` give key j's score and value row.
    private static func attend(out: UnsafeMutablePointer<Float>, d: Int, keys: [Int], score: (Int) -> Double,
                               value: (Int) -> UnsafePointer<Float>) -> Double {
        guard !keys.isEmpty else {
            for e in 0..<d { out[e] = 0 }
            return -.infinity
        }
        let scores = keys.map(score)
        let mx = scores.max()!
        let w = scores.map { Foundation.exp($0 - mx) }
        let sum = w.reduce(0, +)
        var acc = [Double](repeating: 0, count: d)
        for (t, j) in keys.enumerated() {
            let vj = value(j), p = w[t] / sum
            for e in 0..<d { acc[e] += p * Double(vj[e]) }
        }
        for e in 0..<d { out[e] = Float(acc[e]) }
        return mx + Foundation.log(sum)
    }

    @inline(__always)
    private static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Double {
        var s = 0.0
        for e in 0..<d { s += Double(a[e]) * Double(b[e]) }
        return s
    }

    /// Keys a query at `position` sees: 0 … position, the last `window` of them when windowed.
    private static func visible(_ position: Int, window: Int?) -> [Int] {
        Array((window.map { max(0, position + 1 - $0) } ?? 0)...position)
    }

    public func attentionForward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, segments: [AttentionSegment],
                                 heads: Int, kvHeads: Int, headDim d: Int, scale: Float, window: Int?) {
        let group = heads / kvHeads
        for s in segments {
            for r in 0..<s.rowCount {
                let position = s.pastLength + r
                for h in 0..<heads {
                    let g = h / group
                    let qh = q + ((s.rowStart + r) * heads + h) * d
                    let k = s.keys + g * s.capacity * d, v = s.values + g * s.capacity * d
                    _ = Self.attend(out: out + ((s.rowStart + r) * heads + h) * d, d: d,
                                    keys: Self.visible(position, window: window),
                                    score: { Double(scale) * Self.dot(qh, k + $0 * d, d) }, value: { v + $0 * d })
                }
            }
        }
    }

    public func attentionTrainingForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>,
                                         q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                         sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
                                         window: Int?) {
        let group = heads / kvHeads
        for seq in sequences {
            for t in 0..<seq.count {
                let row = seq.lowerBound + t
                for h in 0..<heads {
                    let g = h / group
                    let qh = q + (row * heads + h) * d
                    let lse = Self.attend(out: out + (row * heads + h) * d, d: d, keys: Self.visible(t, window: window),
                                          score: { Double(scale) * Self.dot(qh, k + ((seq.lowerBound + $0) * kvHeads + g) * d, d) },
                                          value: { v + ((seq.lowerBound + $0) * kvHeads + g) * d })
                    logsumexp[row * heads + h] = Float(lse)
                }
            }
        }
    }

    /// The softmax's backward from its definition: with p_j = e^(s_j − lse) recomputed and
    /// Δ = Σ_e dout_e · out_e: dv_j += p_j · dout, ds_j = p_j · (dout · v_j − Δ),
    /// dq += scale · Σ_j ds_j · k_j, dk_j += scale · ds_j · q.
    public func attentionTrainingBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                          dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                          logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                          v: UnsafePointer<Float>, sequences: [Range<Int>], heads: Int, kvHeads: Int,
                                          headDim d: Int, scale: Float, window: Int?) {
        let group = heads / kvHeads, kvWidth = kvHeads * d
        for seq in sequences {
            // Gradients of this sequence's k and v in f64, added once at the end.
            var gk = [Double](repeating: 0, count: seq.count * kvWidth), gv = gk
            for t in 0..<seq.count {
                let row = seq.lowerBound + t
                for h in 0..<heads {
                    let g = h / group, o = (row * heads + h) * d
                    let lse = Double(logsumexp[row * heads + h])
                    let delta = Self.dot(dout + o, out + o, d)
                    var gq = [Double](repeating: 0, count: d)
                    for j in Self.visible(t, window: window) {
                        let kj = k + ((seq.lowerBound + j) * kvHeads + g) * d, vj = v + ((seq.lowerBound + j) * kvHeads + g) * d
                        let p = Foundation.exp(Double(scale) * Self.dot(q + o, kj, d) - lse)
                        let ds = p * (Self.dot(dout + o, vj, d) - delta)
                        for e in 0..<d {
                            gv[j * kvWidth + g * d + e] += p * Double(dout[o + e])
                            gq[e] += Double(scale) * ds * Double(kj[e])
                            gk[j * kvWidth + g * d + e] += Double(scale) * ds * Double(q[o + e])
                        }
                    }
                    for e in 0..<d { dq[o + e] = Float(Double(dq[o + e]) + gq[e]) }
                }
            }
            for e in 0..<(seq.count * kvWidth) {
                let at = seq.lowerBound * kvWidth + e
                dk[at] = Float(Double(dk[at]) + gk[e])
                dv[at] = Float(Double(dv[at]) + gv[e])
            }
        }
    }

    public func biasedAttentionForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>?,
                                       q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, shape s: BiasedAttention.Shape) {
        let d = s.headDim, hd = s.heads * d
        for i in 0..<s.queries {
            for h in 0..<s.heads {
                let qh = q + i * hd + h * d
                let lse = Self.attend(out: out + i * hd + h * d, d: d, keys: Array(0..<s.visible(i)),
                                      score: { j in Double(s.scale) * Self.dot(qh, k + j * hd + h * d, d)
                                                  + Double(bias?[(h * s.queries + i) * s.keys + j] ?? 0) },
                                      value: { v + $0 * hd + h * d })
                logsumexp?[i * s.heads + h] = Float(lse)
            }
        }
    }

    public func biasedAttentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                        dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                        logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                        v: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape s: BiasedAttention.Shape) {
        let d = s.headDim, hd = s.heads * d
        var gk = [Double](repeating: 0, count: s.keys * hd), gv = gk
        for i in 0..<s.queries {
            for h in 0..<s.heads {
                let o = i * hd + h * d
                let lse = Double(logsumexp[i * s.heads + h])
                let delta = Self.dot(dout + o, out + o, d)
                var gq = [Double](repeating: 0, count: d)
                for j in 0..<s.visible(i) {
                    let kj = k + j * hd + h * d, vj = v + j * hd + h * d
                    let score = Double(s.scale) * Self.dot(q + o, kj, d) + Double(bias?[(h * s.queries + i) * s.keys + j] ?? 0)
                    let p = Foundation.exp(score - lse)
                    let ds = p * (Self.dot(dout + o, vj, d) - delta)
                    for e in 0..<d {
                        gv[j * hd + h * d + e] += p * Double(dout[o + e])
                        gq[e] += Double(s.scale) * ds * Double(kj[e])
                        gk[j * hd + h * d + e] += Double(s.scale) * ds * Double(q[o + e])
                    }
                }
                for e in 0..<d { dq[o + e] = Float(Double(dq[o + e]) + gq[e]) }
            }
        }
        for e in 0..<(s.keys * hd) {
            dk[e] = Float(Double(dk[e]) + gk[e])
            dv[e] = Float(Double(dv[e]) + gv[e])
        }
    }

    // MARK: Loss

    /// logits of row r = x_r · headᵀ (as `linearForward`); loss = log Σ e^logits − logits[target].
    private func rowLogits(_ x: UnsafePointer<Float>, head: LinearWeight, row r: Int, scratch: Scratch) -> [Double] {
        let v = head.outFeatures, c = head.inFeatures
        var logits = [Float](repeating: 0, count: v)
        logits.withUnsafeMutableBufferPointer { l in
            linearForward(head, y: l.baseAddress!, x: x + r * c, xBF16: nil, rows: 1, accumulate: false, scratch: scratch)
        }
        return logits.map(Double.init)
    }

    private static func logSumExp(_ row: [Double]) -> Double {
        let mx = row.max() ?? 0
        return mx + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - mx) })
    }

    public func crossEntropyForward(x: UnsafePointer<Float>, head: LinearWeight, targets: UnsafePointer<Int32>, rows: Int,
                                    losses: UnsafeMutablePointer<Float>?, scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        try CrossEntropy.validate(targets: targets, rows: rows, vocab: head.outFeatures)
        losses?.update(repeating: 0, count: rows)
        var sum = 0.0, count = 0
        for r in 0..<rows where targets[r] != CrossEntropy.ignoreIndex {
            let logits = rowLogits(x, head: head, row: r, scratch: scratch)
            // Stored as f32 per row, as the CPU path stores each row's loss before summing.
            let loss = Float(Self.logSumExp(logits) - logits[Int(targets[r])])
            losses?[r] = loss
            sum += Double(loss)
            count += 1
        }
        return (sum, count)
    }

    /// dlogits = scale · (softmax − onehot(target)), then dx += dlogits · head (`linearBackwardInput`)
    /// and headGrad [V, C] += dlogitsᵀ · x, row by row in f64.
    public func crossEntropyForwardBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight,
                                            targets: UnsafePointer<Int32>, rows: Int, scale: Float, losses: UnsafeMutablePointer<Float>?,
                                            headGrad: UnsafeMutablePointer<Float>?,
                                            scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        try CrossEntropy.validate(targets: targets, rows: rows, vocab: head.outFeatures)
        let c = head.inFeatures
        losses?.update(repeating: 0, count: rows)
        var sum = 0.0, count = 0
        var dlogits = [Float](repeating: 0, count: head.outFeatures)
        for r in 0..<rows where targets[r] != CrossEntropy.ignoreIndex {
            let logits = rowLogits(x, head: head, row: r, scratch: scratch), t = Int(targets[r])
            let lse = Self.logSumExp(logits)
            let loss = Float(lse - logits[t])
            losses?[r] = loss
            sum += Double(loss)
            count += 1
            for j in 0..<logits.count { dlogits[j] = Float(Double(scale) * Foundation.exp(logits[j] - lse)) }
            dlogits[t] = Float(Double(dlogits[t]) - Double(scale))
            dlogits.withUnsafeBufferPointer { d in
                linearBackwardInput(head, dx: dx + r * c, dy: d.baseAddress!, rows: 1, accumulate: true, scratch: scratch)
            }
            if let headGrad {
                for j in 0..<dlogits.count where dlogits[j] != 0 {
                    for e in 0..<c { headGrad[j * c + e] = Float(Double(headGrad[j * c + e]) + Double(dlogits[j]) * Double(x[r * c + e])) }
                }
            }
        }
        return (sum, count)
    }

    // MARK: Elementwise

    /// murmur3's 32-bit finalizer.
    private static func fmix32(_ x: UInt32) -> UInt32 {
        var h = x
        h ^= h >> 16; h &*= 0x85EB_CA6B
        h ^= h >> 13; h &*= 0xC2B2_AE35
        h ^= h >> 16
        return h
    }

    /// Element i is kept when fmix32(i·φ + seed(key)) >> 8 ≥ p·2²⁴, and scaled by 1 / (1 − p)
    /// (the counter-based mask `Dropout` documents).
    public func dropout(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, p: Float, key: UInt64,
                        accumulate: Bool) {
        let seed = Self.fmix32(UInt32(truncatingIfNeeded: key) ^ Self.fmix32(UInt32(truncatingIfNeeded: key >> 32) &+ 0x9E37_79B9))
        let t = Double(p) * 16_777_216
        let threshold: UInt32 = t >= 16_777_216 ? 16_777_216 : UInt32(t)
        let keep = 1 / (1 - p)
        for i in 0..<count {
            let h = Self.fmix32(UInt32(truncatingIfNeeded: i) &* 0x9E37_79B1 &+ seed) >> 8
            let v: Float = h >= threshold ? x[i] * keep : 0
            out[i] = accumulate ? out[i] + v : v
        }
    }

    public func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    public func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
        for i in 0..<count { x[i] *= s }
    }

    public func biasForward(y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, features o: Int) {
        for r in 0..<rows { for i in 0..<o { y[r * o + i] += bias[i] } }
    }

    public func biasBackward(dbias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, features o: Int) {
        for i in 0..<o {
            var s = 0.0
            for r in 0..<rows { s += Double(dy[r * o + i]) }
            dbias[i] = Float(Double(dbias[i]) + s)
        }
    }

    // MARK: Reductions and the optimizer

    public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var ss = 0.0
        for i in 0..<count { ss += Double(x[i]) * Double(x[i]) }
        return ss
    }

    /// The AdamW update in f64 per element (the state stored back as f32).
    public func adamWUpdate(value v: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, expAvg m: UnsafeMutablePointer<Float>,
                            expAvgSq s: UnsafeMutablePointer<Float>, count: Int, step h: AdamWStep) {
        for i in 0..<count {
            var p = Double(v[i]) * Double(h.decay)
            let gi = Double(g[i])
            let mi = Double(m[i]) + Double(h.oneMinusBeta1) * (gi - Double(m[i]))
            let si = Double(s[i]) * Double(h.beta2) + Double(h.oneMinusBeta2) * gi * gi
            p -= Double(h.stepSize) * (mi / (si.squareRoot() / Double(h.bc2) + Double(h.epsilon)))
            v[i] = Float(p); m[i] = Float(mi); s[i] = Float(si)
        }
    }

    /// In f64, each value rounded to f32 where the state holds it; the moments requantized with
    /// the same tables as the CPU backend.
    public func adamW8bitUpdate(value x: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, moments: AdamW8bitMoments,
                                count n: Int, step h: AdamW8bitStep) {
        let b1 = Double(h.beta1), w1 = Double(h.oneMinusBeta1), b2 = Double(h.beta2), w2 = Double(h.oneMinusBeta2)
        let decay = Double(h.decay ?? 1)
        switch moments {
        case let .full(m, v):
            for i in 0..<n {
                let gi = Double(g[i])
                let mi = Double(m[i]) * b1 + w1 * gi, vi = Double(v[i]) * b2 + w2 * gi * gi
                let p = Double(x[i]) * decay + Double(h.fullStepSize) * mi / (vi.squareRoot() + Double(h.fullEpsilon))
                x[i] = Float(p); m[i] = Float(mi); v[i] = Float(vi)
            }
        case let .blockwise(mq, ma, vq, va, bs):
            var mBlock = [Float](repeating: 0, count: bs), vBlock = [Float](repeating: 0, count: bs)
            for b in 0..<((n + bs - 1) / bs) {
                let start = b * bs, count = min(bs, n - start)
                for j in 0..<count {
                    let i = start + j, gi = Double(g[i])
                    let mi = Double(DynamicMap.signed[Int(mq[i])]) * Double(ma[b]) * b1 + w1 * gi
                    let vi = Double(DynamicMap.unsigned[Int(vq[i])]) * Double(va[b]) * b2 + w2 * gi * gi
                    let p = Double(x[i]) * decay + Double(h.stepSize) * mi / (vi.squareRoot() / Double(h.bc2) + Double(h.epsilon))
                    x[i] = Float(p); mBlock[j] = Float(mi); vBlock[j] = Float(vi)
                }
                BlockwiseCodes.signedLUT.withUnsafeBufferPointer {
                    BlockwiseCodes.quantizeBlock(mBlock, count: count, lut: $0.baseAddress!, codes: mq + start, absmax: &ma[b])
                }
                BlockwiseCodes.unsignedLUT.withUnsafeBufferPointer {
                    BlockwiseCodes.quantizeBlock(vBlock, count: count, lut: $0.baseAddress!, codes: vq + start, absmax: &va[b])
                }
            }
        }
    }
}
