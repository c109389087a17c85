@testable import FinchCore
import Foundation
import XCTest

// Dimension letters: Q query rows, K key rows, H heads, D head dim.

/// T5's attention kernel (additive per-head bias, no scaling; causal or not; keys of another
/// length for cross-attention): forward against a double-precision reference, backward against
/// its central finite differences.
final class BiasedAttentionTests: XCTestCase {
    /// out [Q, H, D] in double.
    func reference(q: [Double], k: [Double], v: [Double], bias: [Double], s: BiasedAttention.Shape) -> [Double] {
        let hd = s.heads * s.headDim
        var out = [Double](repeating: 0, count: s.queries * hd)
        for h in 0..<s.heads {
            for i in 0..<s.queries {
                let n = s.visible(i)
                var sc = [Double](repeating: 0, count: n)
                for j in 0..<n {
                    var dot = 0.0
                    for e in 0..<s.headDim { dot += q[i * hd + h * s.headDim + e] * k[j * hd + h * s.headDim + e] }
                    sc[j] = Double(s.scale) * dot + bias[(h * s.queries + i) * s.keys + j]
                }
                let m = sc.max() ?? 0
                let ex = sc.map { exp($0 - m) }, z = ex.reduce(0, +)
                for j in 0..<n {
                    for e in 0..<s.headDim { out[i * hd + h * s.headDim + e] += ex[j] / z * v[j * hd + h * s.headDim + e] }
                }
            }
        }
        return out
    }

    func check(_ s: BiasedAttention.Shape, _ name: String) {
        let hd = s.heads * s.headDim
        let q = randomFloats(s.queries * hd, seed: 1), k = randomFloats(s.keys * hd, seed: 2), v = randomFloats(s.keys * hd, seed: 3)
        let bias = randomFloats(s.heads * s.queries * s.keys, seed: 4), r = randomFloats(s.queries * hd, seed: 5)
        let out = Buffer<Float>(count: s.queries * hd), lse = Buffer<Float>(count: s.queries * s.heads)
        BiasedAttention.forward(out: out.pointer, logsumexp: lse.pointer, q: q, k: k, v: v, bias: bias, shape: s)
        let d = { (a: [Float]) in a.map(Double.init) }
        let ref = reference(q: d(q), k: d(k), v: d(v), bias: d(bias), s: s)
        XCTAssertLessThan(zip(out.array, ref).map { abs(Double($0) - $1) }.max()!, 1e-5, "\(name) forward")

        let dq = Buffer<Float>(count: q.count), dk = Buffer<Float>(count: k.count), dv = Buffer<Float>(count: v.count)
        BiasedAttention.backward(dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: r, out: out.pointer, logsumexp: lse.pointer,
                                 q: q, k: k, v: v, bias: bias, shape: s)
        let nq = q.count, nk = k.count
        let x = d(q) + d(k) + d(v)
        let loss = { (x: [Double]) -> Double in
            let o = self.reference(q: Array(x[0..<nq]), k: Array(x[nq..<(nq + nk)]), v: Array(x[(nq + nk)...]), bias: d(bias), s: s)
            return zip(o, r).reduce(0) { $0 + $1.0 * Double($1.1) }
        }
        let grad = dq.array + dk.array + dv.array
        checkGradient("\(name) dq", got: { grad[$0] }, f: loss, at: x, indices: Array(stride(from: 0, to: nq, by: 3)), tolerance: 2e-4)
        checkGradient("\(name) dk", got: { grad[$0] }, f: loss, at: x, indices: Array(stride(from: nq, to: nq + nk, by: 3)), tolerance: 2e-4)
        checkGradient("\(name) dv", got: { grad[$0] }, f: loss, at: x, indices: Array(stride(from: nq + nk, to: x.count, by: 3)), tolerance: 2e-4)
    }

    func testEncoderSelfAttention() { check(.init(queries: 7, keys: 7, heads: 3, headDim: 5), "encoder") }
    func testCausalDecoderSelfAttention() { check(.init(queries: 6, keys: 6, heads: 2, headDim: 4, causalOffset: 0), "causal") }
    func testCachedRowsSeeThePast() { check(.init(queries: 2, keys: 6, heads: 2, headDim: 4, causalOffset: 4), "cached") }
    func testCrossAttentionWithScale() { check(.init(queries: 4, keys: 9, heads: 2, headDim: 3, scale: 0.5), "cross") }
}
