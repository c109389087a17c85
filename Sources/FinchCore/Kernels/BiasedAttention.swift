import CFinchKernels
import Foundation

// Dimension letters: Q query rows, K key rows, H heads, D head dim.

/// Multi-head attention of one sequence with an additive per-head bias (T5's relative position
/// bias): `out = softmax(scale · q·kᵀ + bias + mask) · v` per head, the softmax in f32. Serves
/// encoder self-attention (no mask), decoder self-attention (causal) and cross-attention (keys
/// from the encoder). Heads run in parallel, each with single-threaded products.
public enum BiasedAttention {
    /// Shapes of one call.
    public struct Shape: Sendable {
        /// Q, K, H, D.
        public var queries: Int, keys: Int, heads: Int, headDim: Int
        /// Causal: query row i sees keys 0 ... i + `causalOffset` (the query's position when the
        /// keys start at position 0: `keys − queries` for new rows appended to a cache); nil sees every key.
        public var causalOffset: Int?
        /// Multiplies q·kᵀ (T5: 1).
        public var scale: Float
        public init(queries: Int, keys: Int, heads: Int, headDim: Int, causalOffset: Int? = nil, scale: Float = 1) {
            self.queries = queries; self.keys = keys; self.heads = heads; self.headDim = headDim
            self.causalOffset = causalOffset; self.scale = scale
        }
        /// Keys query row i sees (0 ..< visible(i)).
        func visible(_ i: Int) -> Int { causalOffset.map { min(keys, max(0, i + $0 + 1)) } ?? keys }
    }

    /// out [Q, H, D] = attention of q [Q, H, D] over k, v [K, H, D] with `bias` [H, Q, K] (nil:
    /// none) added to the scores; `logsumexp` [Q, H] (optional) receives each row's
    /// log Σ_j e^(score_j), what backward needs.
    public static func forward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>?,
                               q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, shape s: Shape) {
        let hd = s.heads * s.headDim
        Parallel.forEach(s.heads, costPerItem: 4 * s.queries * s.keys * s.headDim) { h in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, s.queries * s.keys))   // [Q, K]
            defer { scores.deallocate() }
            computeProbabilities(scores, logsumexp: logsumexp, q: q, k: k, bias: bias, head: h, shape: s)
            GEMM.f32Serial(m: s.queries, n: s.headDim, k: s.keys, a: scores, lda: s.keys, b: v + h * s.headDim, ldb: hd,
                           bTransposed: false, c: out + h * s.headDim, ldc: hd, accumulate: false)
        }
    }

    /// P [Q, K] of head h: the softmax of its scores (0 where masked), and its logsumexp [Q, H].
    static func computeProbabilities(_ p: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>?,
                                     q: UnsafePointer<Float>, k: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                     head h: Int, shape s: Shape) {
        let hd = s.heads * s.headDim
        GEMM.f32Serial(m: s.queries, n: s.keys, k: s.headDim, a: q + h * s.headDim, lda: hd, b: k + h * s.headDim, ldb: hd,
                       bTransposed: true, c: p, ldc: s.keys, alpha: s.scale, accumulate: false)
        for i in 0..<s.queries {
            let row = p + i * s.keys
            if let bias {
                let b = bias + (h * s.queries + i) * s.keys
                for j in 0..<s.keys { row[j] += b[j] }
            }
            let n = s.visible(i)
            var m = -Float.infinity
            for j in 0..<n { m = max(m, row[j]) }
            var sum: Float = 0
            for j in 0..<n { row[j] = expf(row[j] - m); sum += row[j] }
            let inv = 1 / sum
            for j in 0..<n { row[j] *= inv }
            for j in n..<s.keys { row[j] = 0 }
            logsumexp?[i * s.heads + h] = n == 0 ? -.infinity : m + logf(sum)
        }
    }

    /// Backward of `forward`, accumulating dq [Q, H, D], dk and dv [K, H, D] (the bias is frozen:
    /// no gradient). `dout` [Q, H, D]; `out` and `logsumexp` as `forward` wrote them. With
    /// P = e^(score − lse) and Δ_i = dout_i · out_i: dv += Pᵀ·dout, dS = P ∘ (dout·vᵀ − Δ),
    /// dq += scale · dS·k, dk += scale · dSᵀ·q. Heads write disjoint columns, so they run in parallel.
    public static func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                out: UnsafePointer<Float>, logsumexp: UnsafePointer<Float>,
                                q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, shape s: Shape) {
        let hd = s.heads * s.headDim, d = s.headDim
        Parallel.forEach(s.heads, costPerItem: 10 * s.queries * s.keys * s.headDim) { h in
            let count = max(1, s.queries * s.keys)
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)    // [Q, K]
            let dp = UnsafeMutablePointer<Float>.allocate(capacity: count)   // [Q, K]
            defer { p.deallocate(); dp.deallocate() }
            // P again, from the scores and the saved logsumexp.
            GEMM.f32Serial(m: s.queries, n: s.keys, k: d, a: q + h * d, lda: hd, b: k + h * d, ldb: hd,
                           bTransposed: true, c: p, ldc: s.keys, alpha: s.scale, accumulate: false)
            for i in 0..<s.queries {
                let row = p + i * s.keys, n = s.visible(i), lse = logsumexp[i * s.heads + h]
                let b = bias.map { $0 + (h * s.queries + i) * s.keys }
                for j in 0..<n { row[j] = expf(row[j] + (b?[j] ?? 0) - lse) }
                for j in n..<s.keys { row[j] = 0 }
            }
            // dv += Pᵀ · dout
            GEMM.f32Serial(m: s.keys, n: d, k: s.queries, a: p, lda: s.keys, aTransposed: true, b: dout + h * d, ldb: hd,
                           bTransposed: false, c: dv + h * d, ldc: hd, accumulate: true)
            // dP = dout · vᵀ, then dS = P ∘ (dP − Δ)
            GEMM.f32Serial(m: s.queries, n: s.keys, k: d, a: dout + h * d, lda: hd, b: v + h * d, ldb: hd,
                           bTransposed: true, c: dp, ldc: s.keys, accumulate: false)
            for i in 0..<s.queries {
                let delta = finch_dot_f32(dout + i * hd + h * d, out + i * hd + h * d, d)
                let prow = p + i * s.keys, drow = dp + i * s.keys
                for j in 0..<s.keys { drow[j] = prow[j] * (drow[j] - delta) }
            }
            GEMM.f32Serial(m: s.queries, n: d, k: s.keys, a: dp, lda: s.keys, b: k + h * d, ldb: hd, bTransposed: false,
                           c: dq + h * d, ldc: hd, alpha: s.scale, accumulate: true)
            GEMM.f32Serial(m: s.keys, n: d, k: s.queries, a: dp, lda: s.keys, aTransposed: true, b: q + h * d, ldb: hd,
                           bTransposed: false, c: dk + h * d, ldc: hd, alpha: s.scale, accumulate: true)
        }
    }
}
