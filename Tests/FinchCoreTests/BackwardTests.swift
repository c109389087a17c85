import CFinchKernels
@testable import FinchCore
import Foundation
import XCTest

// Backward kernels checked against central finite differences of double-precision reference
// forwards (the references are themselves checked against Finch's f32 forwards), plus exact
// identities. Losses are random projections `Σ out · r`, so the gradient fed in is r.
//
// Dimension letters: N rows, C channels, H query heads, G key/value heads, D head dim,
// V vocabulary, M rows of a product, I / O input / output features.

/// Central difference of f at x along coordinate i.
func finiteDifference(_ f: ([Double]) -> Double, at x: [Double], index i: Int, eps: Double) -> Double {
    var p = x, m = x
    p[i] += eps; m[i] -= eps
    return (f(p) - f(m)) / (2 * eps)
}

/// Checks got(i) against finite differences of f at the given coordinates, relative to the largest
/// reference value among them.
func checkGradient(_ name: String, got: (Int) -> Float, f: ([Double]) -> Double, at x: [Double], indices: [Int],
                   eps: Double = 1e-5, tolerance: Double = 1e-4, file: StaticString = #filePath, line: UInt = #line) {
    let ref = indices.map { finiteDifference(f, at: x, index: $0, eps: eps) }
    let scale = ref.map(abs).max() ?? 0
    XCTAssertGreaterThan(scale, 1e-8, "\(name): gradient too small to check", file: file, line: line)
    var worst = 0.0, at = -1
    for (i, r) in zip(indices, ref) {
        let e = abs(Double(got(i)) - r) / scale
        if e > worst { worst = e; at = i }
    }
    XCTAssertLessThan(worst, tolerance, "\(name)[\(at)]", file: file, line: line)
}

/// Checks Σ grad · δ against the finite difference of f along random directions δ (every coordinate at once).
func checkDirectional(_ name: String, grad: [Float], f: ([Double]) -> Double, at x: [Double], seeds: [UInt64],
                      eps: Double = 1e-5, tolerance: Double = 1e-4, file: StaticString = #filePath, line: UInt = #line) {
    for seed in seeds {
        let dir = randomFloats(x.count, seed: seed).map(Double.init)
        let fd = (f(zip(x, dir).map { $0 + eps * $1 }) - f(zip(x, dir).map { $0 - eps * $1 })) / (2 * eps)
        let an = zip(grad, dir).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        let scale = zip(grad, dir).reduce(0.0) { $0 + abs(Double($1.0) * $1.1) }
        XCTAssertLessThan(abs(fd - an) / max(scale, 1e-12), tolerance, "\(name) direction \(seed): \(an) vs \(fd)",
                          file: file, line: line)
    }
}

/// Runs body on every kernel code path this CPU can run (portable, and AVX-512 where present).
func withEachKernelPath(_ body: (String) -> Void) {
    var paths = ["portable"]
    if finch_cpu_avx512_level() > 0 { paths.append("avx512") }
    for p in paths {
        XCTAssertEqual(finch_force_kernel_path(p), 1)
        body(p)
    }
    finch_force_kernel_path(nil)
}

// MARK: - C kernels

final class BackwardCKernelTests: XCTestCase {
    func testLogSumExpSoftmaxLSEAndExpShiftMatchDouble() {
        withEachKernelPath { path in
            for n in [1, 7, 16, 33, 1000] {
                let x = randomFloats(n, seed: UInt64(n) + 40).map { $0 * 20 }
                let m = Double(x.max()!)
                let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
                XCTAssertEqual(Double(finch_logsumexp(x, n)), lse, accuracy: 1e-5 * max(1, abs(lse)), "\(path) n \(n)")
                let sm = Buffer(x)
                XCTAssertEqual(Double(finch_softmax_lse(sm.pointer, n)), lse, accuracy: 1e-5 * max(1, abs(lse)), "\(path) n \(n)")
                for i in 0..<n {
                    // relative error of e^(x − lse) in f32: a few ulp, plus the rounding of x − lse
                    let p = exp(Double(x[i]) - lse), tol = 1e-6 + 1.2e-7 * abs(Double(x[i]) - lse)
                    XCTAssertEqual(Double(sm[i]), p, accuracy: tol * p + 1e-30, "\(path) softmax n \(n) i \(i)")
                }
                // exp_shift: overwrite, accumulate, and in place
                let y = Buffer<Float>(Array(repeating: 3, count: n))
                finch_exp_shift(y.pointer, x, Float(lse), 0.5, n, 1)
                let z = Buffer(x)
                finch_exp_shift(z.pointer, z.pointer, Float(lse), 0.5, n, 0)
                for i in 0..<n {
                    let e = 0.5 * exp(Double(x[i]) - Double(Float(lse)))
                    let tol = 1e-6 + 1.2e-7 * abs(Double(x[i]) - lse)
                    XCTAssertEqual(Double(y[i]), 3 + e, accuracy: 1e-6 * (3 + e), "\(path) exp_shift acc n \(n)")
                    XCTAssertEqual(Double(z[i]), e, accuracy: tol * e + 1e-30, "\(path) exp_shift n \(n)")
                }
            }
            XCTAssertEqual(finch_logsumexp([-Float.infinity, -.infinity], 2), -.infinity)
            XCTAssertEqual(finch_logsumexp([1, .infinity], 2), .infinity)
        }
    }

    func testSiLUMulBackwardMatchesFiniteDifferences() {
        // Odd count: vector body and tail; gates far into both tails of the sigmoid.
        let n = 1001
        var g = randomFloats(n, seed: 50).map { $0 * 12 }
        g[0] = -100; g[1] = 100; g[2] = 0
        let u = randomFloats(n, seed: 51), dh = randomFloats(n, seed: 52)
        withEachKernelPath { path in
            let dg = Buffer<Float>(Array(repeating: 0.25, count: n)), du = Buffer<Float>(Array(repeating: -1, count: n))
            SwiGLU.backward(dgate: dg.pointer, dup: du.pointer, dh: dh, gate: g, up: u, count: n)
            for i in 0..<n {
                let gd = Double(g[i]), ud = Double(u[i]), hd = Double(dh[i])
                let h = { (gg: Double, uu: Double) in gg / (1 + exp(-gg)) * uu * hd }
                let eps = 1e-6
                let refG = (h(gd + eps, ud) - h(gd - eps, ud)) / (2 * eps)
                let refU = (h(gd, ud + eps) - h(gd, ud - eps)) / (2 * eps)
                XCTAssertEqual(Double(dg[i]) - 0.25, refG, accuracy: 2e-6 * max(1, abs(refG)), "\(path) dgate g=\(g[i])")
                XCTAssertEqual(Double(du[i]) + 1, refU, accuracy: 2e-6 * max(1, abs(refU)), "\(path) dup g=\(g[i])")
            }
        }
    }
}

// MARK: - RMSNorm, RoPE

final class NormRoPEBackwardTests: XCTestCase {
    /// Double-precision RMSNorm: out [N, C].
    static func reference(_ x: ArraySlice<Double>, _ w: ArraySlice<Double>, rows: Int, c: Int, eps: Double) -> [Double] {
        var out = [Double](repeating: 0, count: rows * c)
        let x0 = x.startIndex, w0 = w.startIndex
        for r in 0..<rows {
            var ss = 0.0
            for i in 0..<c { ss += x[x0 + r * c + i] * x[x0 + r * c + i] }
            let s = 1 / (ss / Double(c) + eps).squareRoot()
            for i in 0..<c { out[r * c + i] = w[w0 + i] * x[x0 + r * c + i] * s }
        }
        return out
    }

    func runRMSNorm(rows: Int, c: Int, sample: Int?) {
        let eps: Float = 1e-5
        let x = randomFloats(rows * c, seed: 60), w = randomFloats(c, seed: 61).map { $0 + 1.5 }
        let r = randomFloats(rows * c, seed: 62)
        let out = Buffer<Float>(count: rows * c), rstd = Buffer<Float>(count: rows)
        RMSNorm.forward(out: out.pointer, rstd: rstd.pointer, x: x, weight: w, rows: rows, channels: c, eps: eps)
        let params = x.map(Double.init) + w.map(Double.init)   // [x | weight]
        let refOut = Self.reference(params[0..<(rows * c)], params[(rows * c)...], rows: rows, c: c, eps: Double(eps))
        XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(out.buffer), refOut), 1e-6)
        let loss = { (p: [Double]) -> Double in
            let o = Self.reference(p[0..<(rows * c)], p[(rows * c)...], rows: rows, c: c, eps: Double(eps))
            return zip(o, r).reduce(0.0) { $0 + $1.0 * Double($1.1) }
        }
        // Accumulates onto what is there.
        let dx = Buffer<Float>(Array(repeating: 0.5, count: rows * c)), dw = Buffer<Float>(Array(repeating: -2, count: c))
        RMSNorm.backward(dx: dx.pointer, dweight: dw.pointer, dout: r, x: x, weight: w, rstd: rstd.pointer,
                         rows: rows, channels: c)
        let xIdx = sample.map { s in (0..<s).map { ($0 * 7919) % (rows * c) } + [0, rows * c - 1] } ?? Array(0..<(rows * c))
        checkGradient("dx", got: { dx[$0] - 0.5 }, f: loss, at: params, indices: xIdx)
        checkGradient("dweight", got: { dw[$0 - rows * c] + 2 }, f: loss, at: params, indices: Array((rows * c)..<params.count))
        // A frozen norm (no dweight) gives the same dx.
        let dx2 = Buffer<Float>(Array(repeating: 0.5, count: rows * c))
        RMSNorm.backward(dx: dx2.pointer, dweight: nil, dout: r, x: x, weight: w, rstd: rstd.pointer, rows: rows, channels: c)
        XCTAssertEqual(dx2.array, dx.array)
    }

    func testRMSNormBackwardMatchesFiniteDifferences() { runRMSNorm(rows: 5, c: 37, sample: nil) }

    /// Enough rows for several threads (partial dweight per row chunk).
    func testRMSNormBackwardManyRows() { runRMSNorm(rows: 203, c: 96, sample: 150) }

    /// The rotation is orthogonal: backward is its adjoint, ⟨R x, y⟩ = ⟨x, backward(y)⟩, and its inverse.
    func testRoPEBackwardIsAdjointAndInverse() {
        let d = 16, heads = 3
        let rope = RoPE(headDim: d, theta: 10000)
        let positions: [Int32] = [0, 1, 7, 300, 4095]
        let n = positions.count * heads * d
        let table = rope.table(positions: positions)
        let x = randomFloats(n, seed: 70), y = randomFloats(n, seed: 71)
        let rx = Buffer(x), by = Buffer(y)
        rope.apply(rx.pointer, heads: heads, table: table)
        rope.backward(by.pointer, heads: heads, table: table)
        let lhs = zip(rx.array, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhs = zip(x, by.array).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * Double(n).squareRoot())
        XCTAssertGreaterThan(maxAbsDiff(by.array, y), 0.1)   // it did rotate
        // Per coordinate: the gradient of ⟨R x, y⟩ with respect to x is backward(y).
        let loss = { (p: [Double]) -> Double in
            let b = Buffer(p.map(Float.init))
            rope.apply(b.pointer, heads: heads, table: table)
            return zip(b.array, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        // (The loss is linear, so a large step is exact and keeps f32 rounding out of the difference.)
        checkGradient("rope", got: { by[$0] }, f: loss, at: x.map(Double.init), indices: Array(0..<n), eps: 0.5,
                      tolerance: 1e-4)
        rope.apply(rx.pointer, heads: heads, table: table, inverse: true)
        XCTAssertLessThan(maxAbsDiff(rx.array, x), 1e-5)
    }
}

// MARK: - Attention

final class AttentionBackwardTests: XCTestCase {
    let h = 4, g = 2, d = 8
    /// Sliding window (nil: full causal attention); the sliding-window tests rerun the others with one.
    var window: Int? = nil

    /// Windows shorter than a row block (5) and ending inside a later block (67): keys before
    /// t − w + 1 are masked in forward and get no gradient.
    static let windows = [5, 67]

    func testSlidingWindowForwardMatchesNaive() {
        for w in Self.windows { window = w; testTrainingForwardMatchesNaive() }
    }

    func testSlidingWindowBackwardMatchesFiniteDifferences() {
        for w in Self.windows { window = w; testTrainingBackwardMatchesFiniteDifferences() }
    }

    func testSlidingWindowSharesAgree() {
        for w in Self.windows { window = w; testTrainingBackwardSharesAgree() }
    }
    /// Two sequences longer than a 64-row block, a short one, one of a single row, and two unused rows.
    let sequences: [Range<Int>] = [0..<70, 70..<73, 75..<76, 76..<206]
    var n: Int { sequences.map(\.upperBound).max()! }
    var scale: Float { 1 / Float(d).squareRoot() }

    /// Double-precision causal GQA attention: out [N, H, D] and lse [N, H] (zero on unused rows).
    func reference(q: ArraySlice<Double>, k: ArraySlice<Double>, v: ArraySlice<Double>) -> (out: [Double], lse: [Double]) {
        let q0 = q.startIndex, k0 = k.startIndex, v0 = v.startIndex
        var out = [Double](repeating: 0, count: n * h * d), lse = [Double](repeating: 0, count: n * h)
        var p = [Double](repeating: 0, count: n)
        for s in sequences { for i in s { for head in 0..<h {
            let kv = head / (h / g)
            var mx = -Double.infinity
            let first = window.map { max(s.lowerBound, i - $0 + 1) } ?? s.lowerBound
            for j in first...i {
                var dot = 0.0
                for e in 0..<d { dot += q[q0 + (i * h + head) * d + e] * k[k0 + (j * g + kv) * d + e] }
                p[j] = dot * Double(scale)
                mx = max(mx, p[j])
            }
            var z = 0.0
            for j in first...i { p[j] = exp(p[j] - mx); z += p[j] }
            lse[i * h + head] = mx + log(z)
            for j in first...i {
                for e in 0..<d { out[(i * h + head) * d + e] += p[j] / z * v[v0 + (j * g + kv) * d + e] }
            }
        } } }
        return (out, lse)
    }

    struct Run {
        var out, lse, dq, dk, dv: [Float]
    }

    /// Forward and backward with gradients accumulated onto `prefill`.
    func run(q: [Float], k: [Float], v: [Float], r: [Float], prefill: Float, parts: Int?) -> Run {
        let out = Buffer<Float>(Array(repeating: 9, count: n * h * d)), lse = Buffer<Float>(Array(repeating: 9, count: n * h))
        Attention.trainingForward(out: out.pointer, logsumexp: lse.pointer, q: q, k: k, v: v, sequences: sequences,
                                  heads: h, kvHeads: g, headDim: d, scale: scale, window: window)
        let dq = Buffer<Float>(Array(repeating: prefill, count: n * h * d))
        let dk = Buffer<Float>(Array(repeating: prefill, count: n * g * d)), dv = Buffer<Float>(Array(repeating: prefill, count: n * g * d))
        if let parts {
            Attention.trainingBackward(dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: r, out: out.pointer,
                                       logsumexp: lse.pointer, q: q, k: k, v: v, sequences: sequences, heads: h,
                                       kvHeads: g, headDim: d, scale: scale, window: window, parts: parts)
        } else {
            Attention.trainingBackward(dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: r, out: out.pointer,
                                       logsumexp: lse.pointer, q: q, k: k, v: v, sequences: sequences, heads: h,
                                       kvHeads: g, headDim: d, scale: scale, window: window)
        }
        return Run(out: out.array, lse: lse.array, dq: dq.array.map { $0 - prefill },
                   dk: dk.array.map { $0 - prefill }, dv: dv.array.map { $0 - prefill })
    }

    lazy var q = randomFloats(n * h * d, seed: 80).map { $0 * 2 }
    lazy var k = randomFloats(n * g * d, seed: 81).map { $0 * 2 }
    lazy var v = randomFloats(n * g * d, seed: 82)
    lazy var r = randomFloats(n * h * d, seed: 83)
    let unused = [73, 74]

    func testTrainingForwardMatchesNaive() {
        let res = run(q: q, k: k, v: v, r: r, prefill: 0, parts: nil)
        let ref = reference(q: q.map(Double.init)[...], k: k.map(Double.init)[...], v: v.map(Double.init)[...])
        for row in 0..<n where !unused.contains(row) {
            for i in 0..<(h * d) {
                XCTAssertEqual(Double(res.out[row * h * d + i]), ref.out[row * h * d + i], accuracy: 2e-6, "row \(row)")
            }
            for i in 0..<h { XCTAssertEqual(Double(res.lse[row * h + i]), ref.lse[row * h + i], accuracy: 2e-6, "lse row \(row)") }
        }
        for row in unused {   // rows in no sequence are left alone
            XCTAssertTrue(res.out[(row * h * d)..<((row + 1) * h * d)].allSatisfy { $0 == 9 })
            XCTAssertTrue(res.lse[(row * h)..<((row + 1) * h)].allSatisfy { $0 == 9 })
        }
    }

    func testTrainingBackwardMatchesFiniteDifferences() {
        let res = run(q: q, k: k, v: v, r: r, prefill: 0.5, parts: nil)
        let nq = q.count, nk = k.count
        let params = (q + k + v).map(Double.init)   // [q | k | v]
        let loss = { (p: [Double]) -> Double in
            let o = self.reference(q: p[0..<nq], k: p[nq..<(nq + nk)], v: p[(nq + nk)...]).out
            return zip(o, self.r).reduce(0.0) { $0 + $1.0 * Double($1.1) }
        }
        // Rows at block edges (63, 64, 65 of a sequence), sequence starts and ends, the single-row
        // sequence, and a spread of others; every head and kv head.
        let rows = [0, 1, 2, 63, 64, 65, 69, 70, 71, 72, 75, 76, 100, 139, 140, 141, 170, 205]
        let qIdx = rows.flatMap { row in (0..<h).map { (row * h + $0) * d + (row + $0) % d } }
        let kvIdx = rows.flatMap { row in (0..<g).map { (row * g + $0) * d + (row * 3 + $0) % d } }
        checkGradient("dq", got: { res.dq[$0] }, f: loss, at: params, indices: qIdx)
        checkGradient("dk", got: { res.dk[$0 - nq] }, f: loss, at: params, indices: kvIdx.map { $0 + nq })
        checkGradient("dv", got: { res.dv[$0 - nq - nk] }, f: loss, at: params, indices: kvIdx.map { $0 + nq + nk })
        // Every coordinate at once, along random directions.
        checkDirectional("attention", grad: res.dq + res.dk + res.dv, f: loss, at: params, seeds: [84, 85, 86])
        // Unused rows get no gradient.
        for row in unused {
            XCTAssertTrue(res.dq[(row * h * d)..<((row + 1) * h * d)].allSatisfy { $0 == 0 })
            XCTAssertTrue(res.dk[(row * g * d)..<((row + 1) * g * d)].allSatisfy { $0 == 0 })
            XCTAssertTrue(res.dv[(row * g * d)..<((row + 1) * g * d)].allSatisfy { $0 == 0 })
        }
    }

    /// Cutting the work into any number of shares (units of dk / dv split between them and
    /// reduced after) gives the same gradients as one share.
    func testTrainingBackwardSharesAgree() {
        let one = run(q: q, k: k, v: v, r: r, prefill: 0, parts: 1)
        for parts in [2, 3, 5, 16, 40] {
            let res = run(q: q, k: k, v: v, r: r, prefill: 0, parts: parts)
            let scaleQ = one.dq.map(abs).max()!, scaleK = one.dk.map(abs).max()!, scaleV = one.dv.map(abs).max()!
            XCTAssertLessThan(maxAbsDiff(res.dq, one.dq) / scaleQ, 1e-5, "parts \(parts)")
            XCTAssertLessThan(maxAbsDiff(res.dk, one.dk) / scaleK, 1e-5, "parts \(parts)")
            XCTAssertLessThan(maxAbsDiff(res.dv, one.dv) / scaleV, 1e-5, "parts \(parts)")
        }
        // The shares really do split (sequence, kv head) units at these sizes.
        let (tasks, units, _) = Attention.trainingTasks(sequences: sequences, heads: h, kvHeads: g)
        let split = Attention.balancedSplit(tasks, parts: 5)
        XCTAssertEqual(split.map(\.count).reduce(0, +), tasks.count)
        XCTAssertTrue(units.contains { u in split.contains { $0.contains(u.tasks.lowerBound) && !$0.contains(u.tasks.upperBound - 1) } })
    }

    /// One key: P = 1, so out = v, lse = scale·q·k, dv = Σ of dout over the group's heads, dq = dk = 0.
    func testSingleKeyClosedForm() {
        let seqs: [Range<Int>] = [0..<1, 1..<2, 2..<3]
        let rows = 3
        let q = randomFloats(rows * h * d, seed: 90), k = randomFloats(rows * g * d, seed: 91)
        let v = randomFloats(rows * g * d, seed: 92), dout = randomFloats(rows * h * d, seed: 93)
        let out = Buffer<Float>(count: rows * h * d), lse = Buffer<Float>(count: rows * h)
        Attention.trainingForward(out: out.pointer, logsumexp: lse.pointer, q: q, k: k, v: v, sequences: seqs,
                                  heads: h, kvHeads: g, headDim: d, scale: scale)
        let dq = Buffer<Float>(count: rows * h * d), dk = Buffer<Float>(count: rows * g * d), dv = Buffer<Float>(count: rows * g * d)
        Attention.trainingBackward(dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: dout, out: out.pointer,
                                   logsumexp: lse.pointer, q: q, k: k, v: v, sequences: seqs, heads: h, kvHeads: g,
                                   headDim: d, scale: scale)
        for row in 0..<rows { for head in 0..<h {
            let kv = head / (h / g)
            let qk = (0..<d).reduce(0.0) { $0 + Double(q[(row * h + head) * d + $1]) * Double(k[(row * g + kv) * d + $1]) }
            XCTAssertEqual(Double(lse[row * h + head]), qk * Double(scale), accuracy: 1e-6)
            for e in 0..<d {
                XCTAssertEqual(out[(row * h + head) * d + e], v[(row * g + kv) * d + e], accuracy: 1e-7)
                XCTAssertEqual(dq[(row * h + head) * d + e], 0, accuracy: 1e-6)
            }
        } }
        for row in 0..<rows { for kv in 0..<g { for e in 0..<d {
            let sum = (kv * (h / g)..<((kv + 1) * (h / g))).reduce(Float(0)) { $0 + dout[(row * h + $1) * d + e] }
            XCTAssertEqual(dv[(row * g + kv) * d + e], sum, accuracy: 1e-6)
            XCTAssertEqual(dk[(row * g + kv) * d + e], 0, accuracy: 1e-6)
        } } }
    }
}

// MARK: - Cross-entropy

final class CrossEntropyTests: XCTestCase {
    /// Mean-free reference: (Σ over counted rows of lse − logit[target], count).
    static func reference(_ logits: [Double], _ targets: [Int32], vocab: Int) -> (sum: Double, count: Int, lse: [Double]) {
        var sum = 0.0, count = 0
        var lses = [Double](repeating: 0, count: targets.count)
        for (r, t) in targets.enumerated() where t != -100 {
            let row = logits[(r * vocab)..<((r + 1) * vocab)]
            let m = row.max()!
            let lse = m + log(row.reduce(0.0) { $0 + exp($1 - m) })
            lses[r] = lse
            sum += lse - row[r * vocab + Int(t)]
            count += 1
        }
        return (sum, count, lses)
    }

    func testShiftedTargets() {
        // Two sequences and one row outside them: row t predicts label t + 1 of its own sequence.
        let labels: [Int32] = [5, -100, 7, 8, 9, 10, 11, 12]
        let t = CrossEntropy.shiftedTargets(labels: labels, sequences: [0..<3, 3..<7])
        XCTAssertEqual(t, [-100, 7, -100, 9, 10, 11, -100, -100])
        XCTAssertEqual(CrossEntropy.countTargets(t, rows: t.count), 4)
    }

    func testForwardMatchesDoubleAndRejectsBadTargets() throws {
        for vocab in [37, 1000] {
            let rows = 6
            let logits = randomFloats(rows * vocab, seed: UInt64(vocab)).map { $0 * 8 }
            let targets: [Int32] = [3, -100, Int32(vocab - 1), 0, 17, -100]
            let losses = Buffer<Float>(count: rows), lse = Buffer<Float>(count: rows)
            let (sum, count) = try CrossEntropy.forward(losses: losses.pointer, logsumexp: lse.pointer, logits: logits,
                                                        targets: targets, rows: rows, vocab: vocab)
            let ref = Self.reference(logits.map(Double.init), targets, vocab: vocab)
            XCTAssertEqual(count, 4)
            XCTAssertEqual(sum, ref.sum, accuracy: 1e-5 * abs(ref.sum))
            for r in 0..<rows where targets[r] != -100 {
                XCTAssertEqual(Double(lse[r]), ref.lse[r], accuracy: 1e-5 * abs(ref.lse[r]))
                XCTAssertEqual(Double(losses[r]), ref.lse[r] - Double(logits[r * vocab + Int(targets[r])]), accuracy: 1e-5)
            }
            XCTAssertEqual(losses[1], 0)
            XCTAssertEqual(losses[5], 0)
        }
        for bad: Int32 in [37, -1, -101] {
            XCTAssertThrowsError(try CrossEntropy.forward(losses: nil, logsumexp: nil, logits: [Float](repeating: 0, count: 2 * 37),
                                                          targets: [0, bad], rows: 2, vocab: 37)) { error in
                if case let CoreError.invalidTarget(row, target, vocab)? = error as? CoreError {
                    XCTAssertEqual([row, target, vocab], [1, Int(bad), 37])
                } else {
                    XCTFail("\(error)")
                }
            }
        }
    }

    func testBackwardMatchesFiniteDifferencesOfMeanLoss() throws {
        let vocab = 37, rows = 5
        let logits = randomFloats(rows * vocab, seed: 100).map { $0 * 4 }
        let targets: [Int32] = [3, -100, 36, 0, 20]
        let count = CrossEntropy.countTargets(targets, rows: rows)
        let mean = { (p: [Double]) -> Double in let r = Self.reference(p, targets, vocab: vocab); return r.sum / Double(r.count) }
        withEachKernelPath { path in
            let lse = Buffer<Float>(count: rows)
            _ = try? CrossEntropy.forward(losses: nil, logsumexp: lse.pointer, logits: logits, targets: targets, rows: rows, vocab: vocab)
            for saved in [true, false] {
                let dl = Buffer<Float>(Array(repeating: 1, count: rows * vocab))   // accumulates onto 1
                CrossEntropy.backward(dlogits: dl.pointer, logsumexp: saved ? UnsafePointer(lse.pointer) : nil, logits: logits,
                                      targets: targets, rows: rows, vocab: vocab, scale: 1 / Float(count))
                checkGradient("\(path) dlogits saved \(saved)", got: { dl[$0] - 1 }, f: mean, at: logits.map(Double.init),
                              indices: Array(0..<(rows * vocab)), eps: 1e-4, tolerance: 1e-5)
                XCTAssertTrue(dl.array[vocab..<(2 * vocab)].allSatisfy { $0 == 1 }, "ignored row untouched")
                for r in 0..<rows where targets[r] != -100 {   // softmax − onehot: each row sums to zero
                    let s = (0..<vocab).reduce(0.0) { $0 + Double(dl[r * vocab + $1] - 1) }
                    XCTAssertEqual(s, 0, accuracy: 5e-6)   // (each 1 + g rounds to f32)
                }
            }
        }
    }

    /// SmolLM2's vocabulary size, in place, parallel over rows.
    func testInPlaceLargeVocabulary() throws {
        let vocab = 49152, rows = 6
        let logits = randomFloats(rows * vocab, seed: 110).map { $0 * 10 }
        let targets: [Int32] = [0, 49151, -100, 12345, 16, 49135]
        let lse = Buffer<Float>(count: rows)
        let (sum, count) = try CrossEntropy.forward(losses: nil, logsumexp: lse.pointer, logits: logits, targets: targets,
                                                    rows: rows, vocab: vocab)
        let ref = Self.reference(logits.map(Double.init), targets, vocab: vocab)
        XCTAssertEqual(count, 5)
        XCTAssertEqual(sum, ref.sum, accuracy: 1e-5 * abs(ref.sum))
        let scale = 1 / Float(count)
        let outOfPlace = Buffer<Float>(count: rows * vocab)
        CrossEntropy.backward(dlogits: outOfPlace.pointer, logsumexp: lse.pointer, logits: logits, targets: targets,
                              rows: rows, vocab: vocab, scale: scale)
        let inPlace = Buffer(logits)
        CrossEntropy.backward(dlogits: inPlace.pointer, logsumexp: nil, logits: inPlace.pointer, targets: targets,
                              rows: rows, vocab: vocab, scale: scale)
        XCTAssertLessThan(maxAbsDiff(inPlace.array, outOfPlace.array), 1e-9)
        XCTAssertTrue(inPlace.array[(2 * vocab)..<(3 * vocab)].allSatisfy { $0 == 0 }, "ignored row zeroed in place")
        for r in 0..<rows where targets[r] != -100 {
            var s = 0.0, worst = 0.0
            for j in 0..<vocab {
                let want = (exp(Double(logits[r * vocab + j]) - ref.lse[r]) - (j == Int(targets[r]) ? 1 : 0)) * Double(scale)
                worst = max(worst, abs(Double(inPlace[r * vocab + j]) - want))
                s += Double(inPlace[r * vocab + j])
            }
            XCTAssertLessThan(worst, 1e-6 * Double(scale), "row \(r)")
            XCTAssertEqual(s, 0, accuracy: 1e-5 * Double(scale), "row \(r) sums to zero")
        }
    }

    /// The chunked LM head + loss equals the loss of x·Wᵀ, and dx its gradient; masked rows get nothing.
    func testLinearForwardBackwardMatchesFiniteDifferences() throws {
        let vocab = 53, c = 24, rows = 11
        let x = randomFloats(rows * c, seed: 120), wv = randomFloats(vocab * c, seed: 121)
        let targets: [Int32] = [1, -100, 52, 0, -100, 7, 7, 30, -100, 2, 44]
        let count = CrossEntropy.countTargets(targets, rows: rows)
        let scale = 1 / Float(count)
        let params = x.map(Double.init)
        let lossOf = { (p: [Double], w: [Double]) -> Double in
            var logits = [Double](repeating: 0, count: rows * vocab)
            for r in 0..<rows { for o in 0..<vocab {
                logits[r * vocab + o] = (0..<c).reduce(0.0) { $0 + p[r * c + $1] * w[o * c + $1] }
            } }
            return Self.reference(logits, targets, vocab: vocab).sum
        }
        let wd = wv.map(Double.init)
        for chunk in [3, 4, 256] {
            let head = LinearWeight(outFeatures: vocab, inFeatures: c, values: Buffer(wv), dtype: .f32)
            let dx = Buffer<Float>(Array(repeating: 2, count: rows * c))
            let (sum, n) = try CrossEntropy.linearForwardBackward(dx: dx.pointer, x: x, head: head, targets: targets,
                                                                  rows: rows, scale: scale, chunkRows: chunk, scratch: Scratch())
            XCTAssertEqual(n, count)
            XCTAssertEqual(sum, lossOf(params, wd), accuracy: 1e-5 * sum)
            checkGradient("dx chunk \(chunk)", got: { dx[$0] - 2 }, f: { Double(scale) * lossOf($0, wd) }, at: params,
                          indices: Array(0..<(rows * c)).filter { targets[$0 / c] != -100 })
            for r in 0..<rows where targets[r] == -100 {
                XCTAssertTrue(dx.array[(r * c)..<((r + 1) * c)].allSatisfy { $0 == 2 })
            }
            // a trained head (modules_to_save): its gradient, added to what the buffer holds
            let dw = Buffer<Float>(Array(repeating: 1, count: vocab * c)), unused = Buffer<Float>(count: rows * c)
            _ = try CrossEntropy.linearForwardBackward(dx: unused.pointer, x: x, head: head, targets: targets,
                                                       rows: rows, scale: scale, headGrad: dw.pointer, chunkRows: chunk, scratch: Scratch())
            checkGradient("dW chunk \(chunk)", got: { dw[$0] - 1 }, f: { Double(scale) * lossOf(params, $0) }, at: wd,
                          indices: Array(0..<(vocab * c)))
        }
        // bf16 head: x and dlogits are rounded to bf16 (f32 accumulation), so compare loosely.
        let wb = wv.map { BFloat16.toFloat(BFloat16.from($0)) }
        let head = LinearWeight(outFeatures: vocab, inFeatures: c, values: Buffer(wb), dtype: .bf16)
        let dx = Buffer<Float>(count: rows * c)
        let (sum, _) = try CrossEntropy.linearForwardBackward(dx: dx.pointer, x: x, head: head, targets: targets,
                                                              rows: rows, scale: scale, chunkRows: 5, scratch: Scratch())
        let xr = x.map { Double(BFloat16.toFloat(BFloat16.from($0))) }
        XCTAssertEqual(sum, lossOf(xr, wb.map(Double.init)), accuracy: 1e-4 * sum)
        checkGradient("dx bf16", got: { dx[$0] }, f: { Double(scale) * lossOf($0, wb.map(Double.init)) }, at: params,
                      indices: Array(0..<(rows * c)), tolerance: 2e-2)
    }
}

// MARK: - Linear layers

final class LinearBackwardTests: XCTestCase {
    /// op(A)·op(B) with A stored transposed, through every backend, with padding and accumulation.
    func testGEMMWithTransposedA() {
        let m = 9, n = 11, k = 13, lda = m + 3, ldb = n + 2, ldc = n + 1
        let at = randomFloats(k * lda, seed: 130), b = randomFloats(k * ldb, seed: 131)   // A stored [K, M]
        var ref = [Double](repeating: 0, count: m * ldc)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { ref[i * ldc + j] += Double(at[p * lda + i]) * Double(b[p * ldb + j]) } } }
        func check(_ c: Buffer<Float>, _ want: [Double], _ name: String) {
            let got = (0..<m).flatMap { i in (0..<n).map { j in c[i * ldc + j] } }
            let w = (0..<m).flatMap { i in (0..<n).map { j in want[i * ldc + j] } }
            got.withUnsafeBufferPointer { XCTAssertLessThan(maxRelErr($0, w), 1e-5, name) }
            XCTAssertTrue((0..<m).allSatisfy { c[$0 * ldc + n] == 7 }, "\(name): padding untouched")
        }
        for backend in [GEMM.Backend.dnnl, .openblas] {
            let c = Buffer<Float>(Array(repeating: 7, count: m * ldc))
            GEMM.f32(m: m, n: n, k: k, a: at, lda: lda, aTransposed: true, b: b, ldb: ldb, bTransposed: false,
                     c: c.pointer, ldc: ldc, accumulate: false, backend: backend)
            check(c, ref.enumerated().map { $0.offset % ldc == n ? 7 : $0.element }, "\(backend)")
            GEMM.f32(m: m, n: n, k: k, a: at, lda: lda, aTransposed: true, b: b, ldb: ldb, bTransposed: false,
                     c: c.pointer, ldc: ldc, accumulate: true, backend: backend)
            check(c, ref.map { 2 * $0 }, "\(backend) accumulate")
        }
        let c = Buffer<Float>(Array(repeating: 7, count: m * ldc))
        GEMM.f32Serial(m: m, n: n, k: k, a: at, lda: lda, aTransposed: true, b: b, ldb: ldb, bTransposed: false,
                       c: c.pointer, ldc: ldc, alpha: 0.5, accumulate: true)
        check(c, ref.enumerated().map { $0.offset % ldc == n ? 7 : 7 + 0.5 * $0.element }, "serial")
        // Both transposed: Aᵀ·Bᵀ with B stored [N, K].
        let bt = randomFloats(n * k, seed: 132)
        var ref2 = [Double](repeating: 0, count: m * ldc)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { ref2[i * ldc + j] += Double(at[p * lda + i]) * Double(bt[j * k + p]) } } }
        let c2 = Buffer<Float>(Array(repeating: 7, count: m * ldc))
        GEMM.f32(m: m, n: n, k: k, a: at, lda: lda, aTransposed: true, b: bt, ldb: k, bTransposed: true,
                 c: c2.pointer, ldc: ldc, accumulate: false)
        check(c2, ref2, "both transposed")
        // bf16 operands.
        let ab = at.map(BFloat16.from), bb = b.map(BFloat16.from)
        var refB = [Double](repeating: 0, count: m * ldc)
        for i in 0..<m { for j in 0..<n { for p in 0..<k {
            refB[i * ldc + j] += Double(BFloat16.toFloat(ab[p * lda + i])) * Double(BFloat16.toFloat(bb[p * ldb + j]))
        } } }
        let c3 = Buffer<Float>(Array(repeating: 7, count: m * ldc))
        GEMM.bf16(m: m, n: n, k: k, a: ab, lda: lda, aTransposed: true, b: bb, ldb: ldb, bTransposed: false,
                  c: c3.pointer, ldc: ldc, accumulate: false)
        check(c3, refB, "bf16")
    }

    /// dx (+)= dy · W through frozen f32 and bf16 weights (bf16: dy rounded to bf16, f32 accumulation).
    func testBackwardInputMatchesDouble() {
        for dtype in WeightDType.allCases {
            for (m, o, i) in [(1, 7, 5), (3, 16, 40), (4, 33, 17), (17, 96, 64), (64, 50, 130)] {
                var wv = randomFloats(o * i, seed: UInt64(o * 3 + i))
                if dtype == .bf16 { wv = wv.map { BFloat16.toFloat(BFloat16.from($0)) } }
                let w = LinearWeight(outFeatures: o, inFeatures: i, values: Buffer(wv), dtype: dtype)
                let dy = randomFloats(m * o, seed: UInt64(m * 11 + o))
                let dyr = dtype == .bf16 ? dy.map { BFloat16.toFloat(BFloat16.from($0)) } : dy
                var ref = [Double](repeating: 0, count: m * i)
                for r in 0..<m { for c in 0..<i { for p in 0..<o { ref[r * i + c] += Double(dyr[r * o + p]) * Double(wv[p * i + c]) } } }
                let dx = Buffer<Float>(Array(repeating: 1, count: m * i))
                w.backwardInput(dx: dx.pointer, dy: dy, rows: m, scratch: Scratch())
                XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(dx.buffer), ref.map { $0 + 1 }), 1e-5, "\(dtype) \(m)×\(o)×\(i)")
                w.backwardInput(dx: dx.pointer, dy: dy, rows: m, accumulate: false, scratch: Scratch())
                XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(dx.buffer), ref), 1e-5, "\(dtype) overwrite \(m)×\(o)×\(i)")
            }
        }
    }

    /// A LoRA branch y = s · (x·Aᵀ)·Bᵀ built from Dense, with dA, dB, dx against finite differences.
    func testDenseLoRAGradientsMatchFiniteDifferences() {
        let m = 7, inF = 19, rank = 4, outF = 11
        let s: Float = 2
        let x = randomFloats(m * inF, seed: 140), a = randomFloats(rank * inF, seed: 141), b = randomFloats(outF * rank, seed: 142)
        let dy = randomFloats(m * outF, seed: 143)   // loss = Σ y · dy
        // forward
        let u = Buffer<Float>(count: m * rank), y = Buffer<Float>(count: m * outF)
        Dense.forward(y: u.pointer, x: x, weight: a, rows: m, outFeatures: rank, inFeatures: inF)          // u [M, r]
        for j in 0..<(m * rank) { u[j] *= s }
        Dense.forward(y: y.pointer, x: u.pointer, weight: b, rows: m, outFeatures: outF, inFeatures: rank)  // y [M, O]
        // backward (accumulating onto 1)
        let dB = Buffer<Float>(Array(repeating: 1, count: outF * rank)), dA = Buffer<Float>(Array(repeating: 1, count: rank * inF))
        let dx = Buffer<Float>(Array(repeating: 1, count: m * inF)), du = Buffer<Float>(count: m * rank)
        Dense.backwardWeight(dweight: dB.pointer, dy: dy, x: u.pointer, rows: m, outFeatures: outF, inFeatures: rank)
        Dense.backwardInput(dx: du.pointer, dy: dy, weight: b, rows: m, outFeatures: outF, inFeatures: rank, accumulate: false)
        for j in 0..<(m * rank) { du[j] *= s }
        Dense.backwardWeight(dweight: dA.pointer, dy: du.pointer, x: x, rows: m, outFeatures: rank, inFeatures: inF)
        Dense.backwardInput(dx: dx.pointer, dy: du.pointer, weight: a, rows: m, outFeatures: rank, inFeatures: inF)
        let params = (x + a + b).map(Double.init)   // [x | A | B]
        let nx = x.count, na = a.count
        let loss = { (p: [Double]) -> Double in
            var total = 0.0
            for r in 0..<m {
                let ur = (0..<rank).map { k in Double(s) * (0..<inF).reduce(0.0) { $0 + p[r * inF + $1] * p[nx + k * inF + $1] } }
                for o in 0..<outF {
                    total += (0..<rank).reduce(0.0) { $0 + ur[$1] * p[nx + na + o * rank + $1] } * Double(dy[r * outF + o])
                }
            }
            return total
        }
        let yRef = (0..<(m * outF)).map { idx -> Double in
            let r = idx / outF, o = idx % outF
            return (0..<rank).reduce(0.0) { acc, k in
                acc + Double(s) * (0..<inF).reduce(0.0) { $0 + Double(x[r * inF + $1]) * Double(a[k * inF + $1]) } * Double(b[o * rank + k])
            }
        }
        XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(y.buffer), yRef), 1e-5)
        checkGradient("dx", got: { dx[$0] - 1 }, f: loss, at: params, indices: Array(0..<nx))
        checkGradient("dA", got: { dA[$0 - nx] - 1 }, f: loss, at: params, indices: Array(nx..<(nx + na)))
        checkGradient("dB", got: { dB[$0 - nx - na] - 1 }, f: loss, at: params, indices: Array((nx + na)..<params.count))
    }
}

// MARK: - LayerNorm

final class LayerNormTests: XCTestCase {
    let rows = 5, c = 37
    lazy var x = randomFloats(rows * c, seed: 61).map { $0 * 3 + 0.5 }
    lazy var w = randomFloats(c, seed: 62).map { 1 + $0 / 4 }
    lazy var b = randomFloats(c, seed: 63)
    lazy var r = randomFloats(rows * c, seed: 64)

    /// (x − mean) / √(var + eps) · w + b in double.
    func reference(_ x: ArraySlice<Double>, _ w: ArraySlice<Double>, _ b: ArraySlice<Double>) -> [Double] {
        let x0 = x.startIndex, w0 = w.startIndex, b0 = b.startIndex
        var out = [Double](repeating: 0, count: rows * c)
        for row in 0..<rows {
            let xs = (0..<c).map { x[x0 + row * c + $0] }
            let mean = xs.reduce(0, +) / Double(c)
            let v = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c)
            for i in 0..<c { out[row * c + i] = (xs[i] - mean) / (v + 1e-5).squareRoot() * w[w0 + i] + b[b0 + i] }
        }
        return out
    }

    func testForwardMatchesDouble() {
        let out = Buffer<Float>(count: rows * c), stats = Buffer<Float>(count: 2 * rows)
        LayerNorm.forward(out: out.pointer, stats: stats.pointer, x: x, weight: w, bias: b, rows: rows, channels: c, eps: 1e-5)
        let ref = reference(x.map(Double.init)[...], w.map(Double.init)[...], b.map(Double.init)[...])
        for i in 0..<(rows * c) { XCTAssertEqual(Double(out[i]), ref[i], accuracy: 2e-6 * max(1, abs(ref[i]))) }
    }

    /// dx, dweight and dbias (accumulating) against finite differences of Σ out·r.
    func testBackwardMatchesFiniteDifferences() {
        let stats = Buffer<Float>(count: 2 * rows), out = Buffer<Float>(count: rows * c)
        LayerNorm.forward(out: out.pointer, stats: stats.pointer, x: x, weight: w, bias: b, rows: rows, channels: c, eps: 1e-5)
        let dx = Buffer<Float>(Array(repeating: 0.5, count: rows * c))
        let dw = Buffer<Float>(Array(repeating: 0.5, count: c)), db = Buffer<Float>(Array(repeating: 0.5, count: c))
        LayerNorm.backward(dx: dx.pointer, dweight: dw.pointer, dbias: db.pointer, dout: r, x: x, weight: w,
                           stats: stats.pointer, rows: rows, channels: c)
        let nx = x.count
        let params = (x + w + b).map(Double.init)
        let loss = { (p: [Double]) -> Double in
            let o = self.reference(p[0..<nx], p[nx..<(nx + self.c)], p[(nx + self.c)...])
            return zip(o, self.r).reduce(0.0) { $0 + $1.0 * Double($1.1) }
        }
        checkGradient("dx", got: { dx[$0] - 0.5 }, f: loss, at: params, indices: Array(0..<nx))
        checkGradient("dweight", got: { dw[$0 - nx] - 0.5 }, f: loss, at: params, indices: Array(nx..<(nx + c)))
        checkGradient("dbias", got: { db[$0 - nx - self.c] - 0.5 }, f: loss, at: params, indices: Array((nx + c)..<(nx + 2 * c)))
    }
}
