import CFinchKernels
@testable import FinchCore
import Foundation
import XCTest

/// Deterministic pseudo-random values in [-1, 1).
func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(Double(s >> 11) / Double(1 << 53) * 2 - 1)
    }
}

/// y[M,N] = x[M,K] · W[N,K]ᵀ in double precision.
func referenceLinear(_ x: [Float], _ w: [Float], m: Int, n: Int, k: Int) -> [Double] {
    var y = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n {
        var s = 0.0
        for p in 0..<k { s += Double(x[i * k + p]) * Double(w[j * k + p]) }
        y[i * n + j] = s
    } }
    return y
}

func maxRelErr(_ got: UnsafeBufferPointer<Float>, _ ref: [Double]) -> Double {
    let scale = ref.map(abs).max() ?? 1
    return zip(got, ref).map { abs(Double($0) - $1) }.max()! / max(scale, 1e-30)
}

final class LinearTests: XCTestCase {
    /// Shapes that hit every path: decode kernel tails (K % 16, N % 4), the decode kernel on every
    /// thread with a last share that is not 16 rows (2, 515, 70), GEMM, accumulate.
    let shapes: [(m: Int, n: Int, k: Int)] = [(1, 7, 5), (1, 64, 48), (2, 37, 33), (3, 16, 576), (4, 130, 70),
                                              (2, 515, 70), (5, 33, 17), (17, 96, 64), (64, 200, 96)]

    func check(_ dtype: WeightDType, tolerance: Double) {
        for (m, n, k) in shapes {
            let x = randomFloats(m * k, seed: UInt64(m * 1000 + k))
            var wv = randomFloats(n * k, seed: UInt64(n * 7 + k))
            if dtype == .bf16 { wv = wv.map { BFloat16.toFloat(BFloat16.from($0)) } }
            let w = LinearWeight(outFeatures: n, inFeatures: k, values: Buffer(wv), dtype: dtype)
            let xb = Buffer(x), y = Buffer<Float>(count: m * n)
            // bf16 weights multiply bf16-rounded activations on every path.
            let xr = dtype == .bf16 ? x.map { BFloat16.toFloat(BFloat16.from($0)) } : x
            let ref = referenceLinear(xr, wv, m: m, n: n, k: k)
            w.forward(y: y.pointer, x: xb.pointer, rows: m, scratch: Scratch())
            XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(y.buffer), ref), tolerance,
                              "\(dtype) m=\(m) n=\(n) k=\(k) path \(String(cString: finch_kernel_path()))")
            // accumulate adds onto what is there
            w.forward(y: y.pointer, x: xb.pointer, rows: m, accumulate: true, scratch: Scratch())
            XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(y.buffer), ref.map { 2 * $0 }), tolerance, "\(dtype) accumulate m=\(m)")
        }
    }

    /// Runs `body` on each code path this CPU can run.
    func forEachKernelPath(_ body: (String) -> Void) {
        let native = String(cString: finch_kernel_path())
        let level = Int(finch_cpu_avx512_level())
        var paths = ["portable", "avx2"]
        if native == "avx512" { paths.append("avx512"); if level >= 2 { paths.append("avx512bf16") } }
        if native == "portable" { paths = ["portable"] }
        for p in paths {
            XCTAssertEqual(finch_force_kernel_path(p), 1)
            body(p)
        }
        finch_force_kernel_path(nil)
    }

    func testF32MatchesDoublePrecision() { forEachKernelPath { _ in check(.f32, tolerance: 1e-5) } }
    func testBF16MatchesDoublePrecisionOfRoundedInputs() { forEachKernelPath { _ in check(.bf16, tolerance: 1e-5) } }

    func testGEMMBackendsAndTransposes() {
        let m = 9, n = 11, k = 13
        let a = randomFloats(m * k, seed: 1), b = randomFloats(k * n, seed: 2)
        var ref = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { ref[i * n + j] += Double(a[i * k + p]) * Double(b[p * n + j]) } } }
        let c = Buffer<Float>(count: m * n)
        GEMM.f32(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
        XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(c.buffer), ref), 1e-5)
        GEMM.f32Serial(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
        XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(c.buffer), ref), 1e-5)
        let ab = a.map(BFloat16.from), bb = b.map(BFloat16.from)
        let refB = (0..<(m * n)).map { idx -> Double in
            let i = idx / n, j = idx % n
            return (0..<k).reduce(0.0) { $0 + Double(BFloat16.toFloat(ab[i * k + $1])) * Double(BFloat16.toFloat(bb[$1 * n + j])) }
        }
        for mode in [GEMM.BF16Compute.native, .f32] {
            GEMM.withBF16Compute(mode) {
                GEMM.bf16(m: m, n: n, k: k, a: ab, lda: k, b: bb, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
            }
            XCTAssertLessThan(maxRelErr(UnsafeBufferPointer(c.buffer), refB), 1e-5, "\(mode)")
        }
    }

    /// bf16 products computed natively and as widened f32 agree with a double-precision product of
    /// the bf16 values, for every transpose, with accumulation, and across the f32 path's column blocks.
    func testBF16ComputeModesAgreeForEveryLayout() {
        print("[gemm] bf16 compute chosen here: \(GEMM.bf16Compute)")
        for (m, n, k) in [(5, 7, 9), (3, 300, 32768)] {   // the second spans three column blocks of the f32 path
            let a = randomFloats(m * k, seed: 4).map(BFloat16.from), b = randomFloats(n * k, seed: 5).map(BFloat16.from)
            let c0 = randomFloats(m * n, seed: 6)
            for aT in [false, true] {
                for bT in [false, true] {
                    // Stored layouts: A [M,K] or [K,M]; B [K,N] or [N,K].
                    func av(_ i: Int, _ p: Int) -> Double { Double(BFloat16.toFloat(aT ? a[p * m + i] : a[i * k + p])) }
                    func bv(_ p: Int, _ j: Int) -> Double { Double(BFloat16.toFloat(bT ? b[j * k + p] : b[p * n + j])) }
                    var ref = [Double](repeating: 0, count: m * n), scale = [Double](repeating: 0, count: m * n)
                    for i in 0..<m { for j in 0..<n { for p in 0..<k {
                        ref[i * n + j] += av(i, p) * bv(p, j); scale[i * n + j] += abs(av(i, p) * bv(p, j))
                    } ; ref[i * n + j] += Double(c0[i * n + j]); scale[i * n + j] += abs(Double(c0[i * n + j])) } }
                    for mode in [GEMM.BF16Compute.native, .f32] {
                        let c = Buffer<Float>(count: m * n)
                        c.pointer.update(from: c0, count: m * n)
                        GEMM.withBF16Compute(mode) {
                            GEMM.bf16(m: m, n: n, k: k, a: a, lda: aT ? m : k, aTransposed: aT, b: b, ldb: bT ? k : n, bTransposed: bT,
                                      c: c.pointer, ldc: n, accumulate: true)
                        }
                        var worst = 0.0
                        for i in 0..<(m * n) { worst = max(worst, abs(Double(c[i]) - ref[i]) / max(scale[i], 1e-30)) }
                        XCTAssertLessThan(worst, 1e-6, "\(mode) m \(m) n \(n) k \(k) aT \(aT) bT \(bT)")
                    }
                }
            }
        }
    }
}

final class BFloat16Tests: XCTestCase {
    func testRoundToNearestEvenAndVectorPathAgree() {
        var values: [Float] = [0, -0, 1, -1, 1.00390625, 1.01171875, 3.14159265, 65504, 1e-40, .infinity, -.infinity, .nan,
                               Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_7FFF)]
        values += randomFloats(1000, seed: 9).map { $0 * 1000 }
        let out = [BF16Bits](unsafeUninitializedCapacity: values.count) { b, n in
            BFloat16.convert(values, to: b.baseAddress!, count: values.count); n = values.count
        }
        for (v, o) in zip(values, out) {
            XCTAssertEqual(o, BFloat16.from(v), "\(v)")
            if v.isNaN { XCTAssertTrue(BFloat16.toFloat(o).isNaN) }
        }
        XCTAssertEqual(BFloat16.from(Float(bitPattern: 0x3F80_8000)), 0x3F80)   // tie → even
        XCTAssertEqual(BFloat16.from(Float(bitPattern: 0x3F81_8000)), 0x3F82)   // tie → even (up)
        XCTAssertEqual(BFloat16.from(Float(bitPattern: 0x3F80_8001)), 0x3F81)   // above half → up
        let back = [Float](unsafeUninitializedCapacity: out.count) { b, n in
            BFloat16.convert(out, to: b.baseAddress!, count: out.count); n = out.count
        }
        for (o, f) in zip(out, back) where !f.isNaN { XCTAssertEqual(f, BFloat16.toFloat(o)) }
    }

    /// Rounding to bf16 precision in f32 equals converting to bf16 and back, NaNs quiet, on the
    /// vector and portable paths, in place too.
    func testRoundInF32EqualsConvertingThereAndBack() {
        var values: [Float] = [0, -0, 1.00390625, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
                               Float(bitPattern: 0x7F7F_FFFF), .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001)]
        values += randomFloats(1000, seed: 2).map { $0 * 100 }
        let native = String(cString: finch_kernel_path())
        for p in native == "portable" ? ["portable"] : ["portable", native] {
            XCTAssertEqual(finch_force_kernel_path(p), 1)
            var out = [Float](repeating: 0, count: values.count)
            finch_round_to_bf16_f32(&out, values, values.count)
            var inPlace = values
            inPlace.withUnsafeMutableBufferPointer { finch_round_to_bf16_f32($0.baseAddress!, $0.baseAddress!, $0.count) }
            for (i, v) in values.enumerated() {
                let expected = BFloat16.toFloat(BFloat16.from(v))
                if v.isNaN {
                    XCTAssertTrue(out[i].isNaN && out[i].bitPattern & 0x0040_0000 != 0, "\(p): NaN stays NaN, quiet")
                } else {
                    XCTAssertEqual(out[i].bitPattern, expected.bitPattern, "\(p): \(v)")
                }
                XCTAssertEqual(inPlace[i].bitPattern, out[i].bitPattern)
            }
        }
        finch_force_kernel_path(nil)
    }
}

final class OpTests: XCTestCase {
    func testRMSNorm() {
        let rows = 3, c = 37
        let x = randomFloats(rows * c, seed: 4), w = randomFloats(c, seed: 5)
        let out = Buffer<Float>(count: rows * c), rstd = Buffer<Float>(count: rows)
        RMSNorm.forward(out: out.pointer, rstd: rstd.pointer, x: x, weight: w, rows: rows, channels: c, eps: 1e-5)
        for r in 0..<rows {
            let ms = (0..<c).reduce(0.0) { $0 + Double(x[r * c + $1]) * Double(x[r * c + $1]) } / Double(c)
            let s = 1 / (ms + 1e-5).squareRoot()
            XCTAssertEqual(Double(rstd[r]), s, accuracy: s * 1e-6)
            for i in 0..<c { XCTAssertEqual(Double(out[r * c + i]), Double(w[i]) * Double(x[r * c + i]) * s, accuracy: 1e-5) }
        }
    }

    func testRoPERotatesHalvesAndInverts() {
        let d = 8, heads = 2, rows = 3
        let rope = RoPE(headDim: d, theta: 10000)
        XCTAssertEqual(rope.invFreq[1], 1 / Float(pow(10000.0, 0.25)), accuracy: 1e-7)
        let x = randomFloats(rows * heads * d, seed: 6)
        let buf = Buffer(x)
        let positions: [Int32] = [0, 5, 1000]
        let table = rope.table(positions: positions)
        rope.apply(buf.pointer, heads: heads, table: table)
        for r in 0..<rows { for h in 0..<heads { for i in 0..<(d / 2) {
            let a = Double(Float(positions[r]) * rope.invFreq[i])
            let b = (r * heads + h) * d
            let x1 = Double(x[b + i]), x2 = Double(x[b + i + d / 2])
            XCTAssertEqual(Double(buf[b + i]), x1 * cos(a) - x2 * sin(a), accuracy: 1e-5)
            XCTAssertEqual(Double(buf[b + i + d / 2]), x2 * cos(a) + x1 * sin(a), accuracy: 1e-5)
        } } }
        rope.apply(buf.pointer, heads: heads, table: table, inverse: true)
        XCTAssertLessThan(zip(buf.array, x).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testLlama3ScalingKeepsHighFrequenciesAndDividesLowOnes() {
        let plain = RoPE(headDim: 64, theta: 500_000)
        let scaled = RoPE(headDim: 64, theta: 500_000,
                          scaling: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        XCTAssertEqual(scaled.invFreq[0], plain.invFreq[0])
        XCTAssertEqual(scaled.invFreq[31], plain.invFreq[31] / 8, accuracy: 1e-12)
        let linear = RoPE(headDim: 64, theta: 10000, scaling: .linear(factor: 4))
        XCTAssertEqual(linear.invFreq[3], RoPE(headDim: 64, theta: 10000).invFreq[3] / 4)
    }

    /// Naive causal GQA attention over a cache with past tokens, several segments, blocks > rowBlock,
    /// with and without a sliding window.
    func testAttentionMatchesNaive() {
        for window in [nil, 1, 5, 40] { attentionMatchesNaive(window: window) }
    }

    func attentionMatchesNaive(window: Int?) {
        let h = 4, g = 2, d = 8, cap = 150
        let specs = [(past: 0, rows: 70), (past: 30, rows: 3), (past: 9, rows: 1), (past: 120, rows: 1)]   // one-row: the decode path
        var q: [Float] = [], segments: [AttentionSegment] = []
        var keys: [Buffer<Float>] = [], values: [Buffer<Float>] = []
        var start = 0
        for (i, s) in specs.enumerated() {
            q += randomFloats(s.rows * h * d, seed: UInt64(10 + i))
            keys.append(Buffer(randomFloats(g * cap * d, seed: UInt64(20 + i))))
            values.append(Buffer(randomFloats(g * cap * d, seed: UInt64(30 + i))))
            segments.append(AttentionSegment(rowStart: start, rowCount: s.rows, pastLength: s.past,
                                             keys: keys[i].pointer, values: values[i].pointer, capacity: cap))
            start += s.rows
        }
        let out = Buffer<Float>(count: start * h * d)
        let scale = 1 / Float(d).squareRoot()
        Attention.forward(out: out.pointer, q: q, segments: segments, heads: h, kvHeads: g, headDim: d, scale: scale,
                          window: window)
        for (si, s) in specs.enumerated() {
            for r in 0..<s.rows { for head in 0..<h {
                let kv = head / (h / g), row = segments[si].rowStart + r
                let visible = s.past + r + 1
                let first = window.map { max(0, visible - $0) } ?? 0
                var sc = (first..<visible).map { j -> Double in
                    (0..<d).reduce(0.0) { $0 + Double(q[(row * h + head) * d + $1]) * Double(keys[si][(kv * cap + j) * d + $1]) } * Double(scale)
                }
                let mx = sc.max()!
                sc = sc.map { exp($0 - mx) }
                let z = sc.reduce(0, +)
                for e in 0..<d {
                    let ref = (first..<visible).reduce(0.0) { $0 + sc[$1 - first] / z * Double(values[si][(kv * cap + $1) * d + e]) }
                    XCTAssertEqual(Double(out[(row * h + head) * d + e]), ref, accuracy: 1e-5,
                                   "window \(String(describing: window)) segment \(si) row \(r) head \(head)")
                }
            } }
        }
    }

    func testSwiGLU() {
        // Odd count: vector body and scalar tail; gates far into both tails of the sigmoid.
        let n = 1001
        var g = randomFloats(n, seed: 7).map { $0 * 12 }
        g[0] = -100; g[1] = 100; g[2] = 0
        let u = randomFloats(n, seed: 8)
        let h = Buffer<Float>(count: n)
        SwiGLU.forward(h: h.pointer, gate: g, up: u, count: n)
        for i in 0..<n {
            let ref = Double(g[i]) / (1 + exp(-Double(g[i]))) * Double(u[i])
            XCTAssertEqual(Double(h[i]), ref, accuracy: 3e-7 * max(1, abs(ref)), "gate \(g[i])")
        }
    }

    func testSoftmaxMatchesDouble() {
        for n in [1, 7, 16, 100, 1000] {
            let x = randomFloats(n, seed: UInt64(n)).map { $0 * 30 }
            let buf = Buffer(x)
            Attention.softmaxInPlace(buf.pointer, count: n)
            let m = Double(x.max()!)
            let z = x.reduce(0.0) { $0 + exp(Double($1) - m) }
            for i in 0..<n {
                let ref = exp(Double(x[i]) - m) / z
                XCTAssertEqual(Double(buf[i]), ref, accuracy: 1e-6 * max(ref, 1e-30) + 1e-12, "n \(n) i \(i)")
            }
            XCTAssertEqual(buf.array.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testParallelCoversEveryIndexOnce() {
        let n = 100_003
        let hits = Buffer<Int32>(count: n)
        Parallel.forEachRange(n, costPerItem: 1_000) { r in for i in r { hits[i] += 1 } }
        XCTAssertTrue(hits.array.allSatisfy { $0 == 1 })
        // Every core works: as many distinct thread ids as the OpenMP runtime offers.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        XCTAssertEqual(Parallel.threadCount, ProcessInfo.processInfo.environment["OMP_NUM_THREADS"].flatMap(Int.init) ?? cores)
        let seen = Buffer<Int32>(count: 64)
        Parallel.forEachRange(64, costPerItem: 1_000_000) { r in seen[r.lowerBound] = 1 }
        XCTAssertEqual(Int(seen.array.reduce(0, +)), min(Parallel.threadCount, 64))
        XCTAssertFalse(String(cString: finch_kernel_path()).isEmpty)
    }
}

final class BiasTests: XCTestCase {
    /// y += b on every row; dbias = column sums of dy (checked against finite differences of Σ y·r).
    func testBiasForwardAndBackward() {
        let rows = 5, o = 37
        let y0 = randomFloats(rows * o, seed: 1), b = randomFloats(o, seed: 2), dy = randomFloats(rows * o, seed: 3)
        let y = Buffer(y0)
        Bias.forward(y: y.pointer, bias: b, rows: rows, features: o)
        for r in 0..<rows { for i in 0..<o { XCTAssertEqual(y[r * o + i], y0[r * o + i] + b[i]) } }
        let db = Buffer<Float>(Array(repeating: 0.25, count: o))
        Bias.backward(dbias: db.pointer, dy: dy, rows: rows, features: o)
        let loss = { (bias: [Double]) -> Double in
            var s = 0.0
            for r in 0..<rows { for i in 0..<o { s += (Double(y0[r * o + i]) + bias[i]) * Double(dy[r * o + i]) } }
            return s
        }
        checkGradient("dbias", got: { db[$0] - 0.25 }, f: loss, at: b.map(Double.init), indices: Array(0..<o))
    }
}

final class GELUTests: XCTestCase {
    /// x/2·(1 + tanh(√(2/π)(x + 0.044715x³))) in double.
    static func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }

    /// Forward against double, odd counts (vector body and tail), far into both tails.
    func testForwardMatchesDouble() {
        let n = 1001
        var x = randomFloats(n, seed: 21).map { $0 * 8 }
        x[0] = -40; x[1] = 40; x[2] = 0; x[3] = 1e-6
        let u = randomFloats(n, seed: 22)
        let y = Buffer<Float>(count: n), h = Buffer<Float>(count: n)
        GELU.forward(y: y.pointer, x: x, count: n)
        GeGLU.forward(h: h.pointer, gate: x, up: u, count: n)
        for i in 0..<n {
            let ref = Self.gelu(Double(x[i]))
            XCTAssertEqual(Double(y[i]), ref, accuracy: 2e-6 * max(1, abs(ref)), "x \(x[i])")
            XCTAssertEqual(Double(h[i]), ref * Double(u[i]), accuracy: 2e-6 * max(1, abs(ref)), "x \(x[i])")
        }
    }

    /// Backward (accumulating) against finite differences of Σ gelu(x)·r and Σ gelu(g)·u·r.
    func testBackwardMatchesFiniteDifferences() {
        let n = 37
        let x = randomFloats(n, seed: 23).map { $0 * 4 }, u = randomFloats(n, seed: 24), r = randomFloats(n, seed: 25)
        let dx = Buffer<Float>(Array(repeating: 0.5, count: n))
        GELU.backward(dx: dx.pointer, dy: r, x: x, count: n)
        let plain = { (p: [Double]) -> Double in (0..<n).reduce(0.0) { $0 + Self.gelu(p[$1]) * Double(r[$1]) } }
        checkGradient("dx", got: { dx[$0] - 0.5 }, f: plain, at: x.map(Double.init), indices: Array(0..<n))
        let dg = Buffer<Float>(Array(repeating: 0.5, count: n)), du = Buffer<Float>(Array(repeating: 0.5, count: n))
        GeGLU.backward(dgate: dg.pointer, dup: du.pointer, dh: r, gate: x, up: u, count: n)
        let gated = { (p: [Double]) -> Double in
            (0..<n).reduce(0.0) { $0 + Self.gelu(p[$1]) * p[n + $1] * Double(r[$1]) }
        }
        let params = (x + u).map(Double.init)
        checkGradient("dgate", got: { dg[$0] - 0.5 }, f: gated, at: params, indices: Array(0..<n))
        checkGradient("dup", got: { du[$0 - n] - 0.5 }, f: gated, at: params, indices: Array(n..<(2 * n)))
    }

    /// The exact GELU x·Φ(x) against double, and its backward against finite differences.
    func testErfGELU() {
        let n = 301
        var x = randomFloats(n, seed: 26).map { $0 * 8 }
        x[0] = -30; x[1] = 30; x[2] = 0
        let y = Buffer<Float>(count: n)
        GELU.forward(y: y.pointer, x: x, count: n, approximation: .erf)
        func exact(_ v: Double) -> Double { 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }
        for i in 0..<n { XCTAssertEqual(Double(y[i]), exact(Double(x[i])), accuracy: 2e-6 * max(1, abs(exact(Double(x[i]))))) }
        let m = 37, r = randomFloats(m, seed: 27), xs = Array(x[3..<(3 + m)]).map { $0 / 2 }
        let dx = Buffer<Float>(Array(repeating: 0.5, count: m))
        GELU.backward(dx: dx.pointer, dy: r, x: xs, count: m, approximation: .erf)
        let loss = { (p: [Double]) -> Double in (0..<m).reduce(0.0) { $0 + exact(p[$1]) * Double(r[$1]) } }
        checkGradient("dx", got: { dx[$0] - 0.5 }, f: loss, at: xs.map(Double.init), indices: Array(0..<m))
    }
}
