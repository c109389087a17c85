@testable import FinchCore
import XCTest

// Dimension letters: as the kernels' (R rows, C channels, H / G heads, D head dim, F features, V vocabulary).

/// Every `ComputeBackend` op, forward and backward, on the CPU backend against the reference
/// backend (plain Swift, f64 accumulation) on random inputs. Errors are max |cpu − reference|
/// over max |reference| of the op's output; each test prints what it measured, and the bounds
/// are ~3x the largest figure measured here (stated per op).
final class BackendTests: XCTestCase {
    let cpu = BackendKind.cpu.backend, ref = BackendKind.reference.backend

    /// ~3x the largest error measured here (scale-relative). Elementwise ops (activations, RoPE,
    /// bias, residual, AdamW): 7.1e-7, GeGLU's backward (the C kernels' tanh); dropout is exact.
    static let elementwiseTolerance: Float = 2.2e-6
    /// Sums (products, norms, attention, loss): 1.9e-7, a 33-long f32 dot product.
    static let reductionTolerance: Float = 6e-7

    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var g = SplitMix64(seed: seed)
        return (0..<n).map { _ in (Float(g.next() % 2_000_001) / 1_000_000 - 1) * scale }
    }

    /// max |a − b| / max |b|.
    func error(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        var d: Float = 0, m: Float = 0
        for (x, y) in zip(a, b) { d = max(d, abs(x - y)); m = max(m, abs(y)) }
        return m == 0 ? d : d / m
    }

    /// Runs `body` on both backends with copies of `buffers` and returns each backend's buffers after.
    func both(_ buffers: [[Float]], _ body: (any ComputeBackend, [UnsafeMutablePointer<Float>]) throws -> Void) rethrows
        -> (cpu: [[Float]], ref: [[Float]]) {
        func run(_ b: any ComputeBackend) throws -> [[Float]] {
            let bufs = buffers.map { v -> Buffer<Float> in let x = Buffer<Float>(count: max(1, v.count)); for (i, e) in v.enumerated() { x[i] = e }; return x }
            try body(b, bufs.map(\.pointer))
            return zip(bufs, buffers).map { Array($0.0.array.prefix($0.1.count)) }
        }
        return (try run(cpu), try run(ref))
    }

    func check(_ name: String, _ r: (cpu: [[Float]], ref: [[Float]]), outputs: [Int], tolerance: Float,
               file: StaticString = #filePath, line: UInt = #line) {
        for o in outputs {
            let e = error(r.cpu[o], r.ref[o], file: file, line: line)
            print("[backend] \(name) output \(o): \(e)")
            XCTAssertLessThanOrEqual(e, tolerance, "\(name) output \(o)", file: file, line: line)
        }
    }

    func testMatmulAndDense() {
        let m = 7, n = 9, k = 33
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            let r = both([random(m * k, seed: 1), random(k * n, seed: 2), random(m * n, seed: 3)]) { b, p in
                b.matmul(m: m, n: n, k: k, a: p[0], lda: at ? m : k, aTransposed: at, b: p[1], ldb: bt ? k : n, bTransposed: bt,
                         c: p[2], ldc: n, accumulate: true)
            }
            check("matmul aT \(at) bT \(bt)", r, outputs: [2], tolerance: Self.reductionTolerance)
        }
        let r = both([random(5 * 16, seed: 4), random(8 * 16, seed: 5), random(5 * 8, seed: 6), random(5 * 16, seed: 7),
                      random(8 * 16, seed: 8)]) { b, p in
            b.denseForward(y: p[2], x: p[0], weight: p[1], rows: 5, outFeatures: 8, inFeatures: 16, accumulate: false)
            b.denseBackwardInput(dx: p[3], dy: p[2], weight: p[1], rows: 5, outFeatures: 8, inFeatures: 16, accumulate: true)
            b.denseBackwardWeight(dweight: p[4], dy: p[2], x: p[0], rows: 5, outFeatures: 8, inFeatures: 16, accumulate: true)
        }
        check("dense fwd/bwd", r, outputs: [2, 3, 4], tolerance: Self.reductionTolerance)
    }

    /// f32 and bf16 weights, decode (≤ 4 rows) and GEMM sizes; forward and the input's backward.
    func testLinearWeights() {
        let o = 24, i = 40
        for dtype in WeightDType.allCases {
            let w = LinearWeight(outFeatures: o, inFeatures: i, values: Buffer(random(o * i, seed: 11)), dtype: dtype)
            for rows in [1, 3, 9] {
                let r = both([random(rows * i, seed: 12), random(rows * o, seed: 13), random(rows * i, seed: 14)]) { b, p in
                    let s = Scratch()
                    b.linearForward(w, y: p[1], x: p[0], xBF16: nil, rows: rows, accumulate: true, scratch: s)
                    b.linearBackwardInput(w, dx: p[2], dy: p[1], rows: rows, accumulate: true, scratch: s)
                }
                check("linear \(dtype) rows \(rows)", r, outputs: [1, 2], tolerance: Self.reductionTolerance)
            }
        }
    }

    func testNorms() {
        let rows = 6, c = 48
        let r = both([random(rows * c, seed: 21, scale: 3), random(c, seed: 22), random(rows * c, seed: 23), random(rows, seed: 0),
                      random(rows * c, seed: 24), random(rows * c, seed: 25), random(c, seed: 26)]) { b, p in
            b.rmsNormForward(out: p[2], rstd: p[3], x: p[0], weight: p[1], rows: rows, channels: c, eps: 1e-6)
            b.rmsNormBackward(dx: p[5], dweight: p[6], dout: p[4], x: p[0], weight: p[1], rstd: p[3], rows: rows, channels: c)
        }
        check("rmsnorm", r, outputs: [2, 3, 5, 6], tolerance: Self.reductionTolerance)
        let l = both([random(rows * c, seed: 31, scale: 3), random(c, seed: 32), random(c, seed: 33), random(rows * c, seed: 34),
                      random(2 * rows, seed: 0), random(rows * c, seed: 35), random(rows * c, seed: 36), random(c, seed: 37),
                      random(c, seed: 38)]) { b, p in
            b.layerNormForward(out: p[3], stats: p[4], x: p[0], weight: p[1], bias: p[2], rows: rows, channels: c, eps: 1e-5)
            b.layerNormBackward(dx: p[6], dweight: p[7], dbias: p[8], dout: p[5], x: p[0], weight: p[1], stats: p[4],
                                rows: rows, channels: c)
        }
        check("layernorm", l, outputs: [3, 4, 6, 7, 8], tolerance: Self.reductionTolerance)
    }

    func testRoPE() {
        let rope = RoPE(headDim: 16, theta: 10_000), rows = 5, heads = 3
        let table = rope.table(positions: [0, 3, 7, 100, 2047])
        let r = both([random(rows * heads * 16, seed: 41)]) { b, p in
            b.ropeApply(rope, x: p[0], heads: heads, table: table, inverse: false)
        }
        check("rope", r, outputs: [0], tolerance: Self.elementwiseTolerance)
        let back = both([random(rows * heads * 16, seed: 42)]) { b, p in b.ropeBackward(rope, dx: p[0], heads: heads, table: table) }
        check("rope backward", back, outputs: [0], tolerance: Self.elementwiseTolerance)
    }

    func testActivations() {
        let n = 257
        let inputs = [random(n, seed: 51, scale: 4), random(n, seed: 52, scale: 2), random(n, seed: 53), random(n, seed: 0),
                      random(n, seed: 54), random(n, seed: 55)]
        let swi = both(inputs) { b, p in
            b.swiGLUForward(h: p[3], gate: p[0], up: p[1], count: n)
            b.swiGLUBackward(dgate: p[4], dup: p[5], dh: p[2], gate: p[0], up: p[1], count: n)
        }
        check("swiglu", swi, outputs: [3, 4, 5], tolerance: Self.elementwiseTolerance)
        let ge = both(inputs) { b, p in
            b.geGLUForward(h: p[3], gate: p[0], up: p[1], count: n)
            b.geGLUBackward(dgate: p[4], dup: p[5], dh: p[2], gate: p[0], up: p[1], count: n)
        }
        check("geglu", ge, outputs: [3, 4, 5], tolerance: Self.elementwiseTolerance)
        for a in [GELU.Approximation.tanh, .erf] {
            let g = both(inputs) { b, p in
                b.geluForward(y: p[3], x: p[0], count: n, approximation: a)
                b.geluBackward(dx: p[4], dy: p[2], x: p[0], count: n, approximation: a)
            }
            check("gelu \(a)", g, outputs: [3, 4], tolerance: Self.elementwiseTolerance)
        }
        for a in [Activation.relu, .silu, .gelu(.tanh), .gelu(.erf)] {
            let r = both(inputs) { b, p in
                b.activationForward(y: p[3], x: p[0], count: n, activation: a)
                b.activationBackward(dx: p[4], dy: p[2], x: p[0], count: n, activation: a)
                b.multiply(out: p[5], p[3], p[1], count: n)
            }
            check("activation \(a)", r, outputs: [3, 4, 5], tolerance: Self.elementwiseTolerance)
        }
    }

    /// Cached attention (two sequences, one decoding a row, a window) and packed training attention
    /// with its backward, grouped heads.
    func testAttention() {
        let h = 4, g = 2, d = 8, cap = 12, scale: Float = 0.35
        let k = random(g * cap * d, seed: 61), v = random(g * cap * d, seed: 62)
        for window in [nil, 3] as [Int?] {
            let r = both([random(5 * h * d, seed: 63), k, v, random(5 * h * d, seed: 0)]) { b, p in
                let segs = [AttentionSegment(rowStart: 0, rowCount: 4, pastLength: 2, keys: p[1], values: p[2], capacity: cap),
                            AttentionSegment(rowStart: 4, rowCount: 1, pastLength: 6, keys: p[1], values: p[2], capacity: cap)]
                b.attentionForward(out: p[3], q: p[0], segments: segs, heads: h, kvHeads: g, headDim: d, scale: scale, window: window)
            }
            check("attention cached window \(window ?? 0)", r, outputs: [3], tolerance: Self.reductionTolerance)
            let n = 11, seqs = [0..<4, 4..<11]
            let t = both([random(n * h * d, seed: 64), random(n * g * d, seed: 65), random(n * g * d, seed: 66),
                          random(n * h * d, seed: 0), random(n * h, seed: 0), random(n * h * d, seed: 67),
                          random(n * h * d, seed: 68), random(n * g * d, seed: 69), random(n * g * d, seed: 70)]) { b, p in
                b.attentionTrainingForward(out: p[3], logsumexp: p[4], q: p[0], k: p[1], v: p[2], sequences: seqs, heads: h,
                                           kvHeads: g, headDim: d, scale: scale, window: window)
                b.attentionTrainingBackward(dq: p[6], dk: p[7], dv: p[8], dout: p[5], out: p[3], logsumexp: p[4], q: p[0],
                                            k: p[1], v: p[2], sequences: seqs, heads: h, kvHeads: g, headDim: d, scale: scale,
                                            window: window)
            }
            check("attention training window \(window ?? 0)", t, outputs: [3, 4, 6, 7, 8], tolerance: Self.reductionTolerance)
        }
    }

    /// T5's attention with a relative-position bias, causal and not, forward and backward.
    func testBiasedAttention() {
        let q = 5, kk = 7, h = 3, d = 8
        for causal in [nil, 2] as [Int?] {
            let shape = BiasedAttention.Shape(queries: q, keys: kk, heads: h, headDim: d, causalOffset: causal)
            let r = both([random(q * h * d, seed: 71), random(kk * h * d, seed: 72), random(kk * h * d, seed: 73),
                          random(h * q * kk, seed: 74), random(q * h * d, seed: 0), random(q * h, seed: 0),
                          random(q * h * d, seed: 75), random(q * h * d, seed: 76), random(kk * h * d, seed: 77),
                          random(kk * h * d, seed: 78)]) { b, p in
                b.biasedAttentionForward(out: p[4], logsumexp: p[5], q: p[0], k: p[1], v: p[2], bias: p[3], shape: shape)
                b.biasedAttentionBackward(dq: p[7], dk: p[8], dv: p[9], dout: p[6], out: p[4], logsumexp: p[5], q: p[0],
                                          k: p[1], v: p[2], bias: p[3], shape: shape)
            }
            check("biased attention causal \(causal ?? -1)", r, outputs: [4, 5, 7, 8, 9], tolerance: Self.reductionTolerance)
        }
    }

    /// The LM head's loss and its gradient, f32 and bf16 heads, an ignored row.
    func testCrossEntropy() throws {
        let rows = 6, c = 16, vocab = 50
        let targets: [Int32] = [3, -100, 49, 0, 17, 8]
        for dtype in WeightDType.allCases {
            let head = LinearWeight(outFeatures: vocab, inFeatures: c, values: Buffer(random(vocab * c, seed: 81)), dtype: dtype)
            var sums: [Double] = []
            // Inputs, dx, and the per-row losses of both passes (filled with garbage first: they are written).
            // and the head's gradient (a trained head), accumulated onto what it holds
            let r = try both([random(rows * c, seed: 82, scale: 2), random(rows * c, seed: 83), random(rows, seed: 84),
                              random(rows, seed: 85), random(vocab * c, seed: 86)]) { b, p in
                try targets.withUnsafeBufferPointer { t in
                    let f = try b.crossEntropyForward(x: p[0], head: head, targets: t.baseAddress!, rows: rows, losses: p[2],
                                                      scratch: Scratch())
                    let fb = try b.crossEntropyForwardBackward(dx: p[1], x: p[0], head: head, targets: t.baseAddress!, rows: rows,
                                                               scale: 0.2, losses: p[3], headGrad: p[4], scratch: Scratch())
                    XCTAssertEqual(f.count, 5); XCTAssertEqual(fb.count, 5)
                    XCTAssertEqual(f.sum, fb.sum, accuracy: 1e-9 * abs(f.sum))
                    for l in [p[2], p[3]] {
                        XCTAssertEqual(l[1], 0, "an ignored row's loss is 0")
                        XCTAssertEqual((0..<rows).reduce(0.0) { $0 + Double(l[$1]) }, f.sum, accuracy: 1e-9 * abs(f.sum))
                    }
                    sums.append(f.sum)
                }
            }
            check("cross-entropy \(dtype) per-row losses", r, outputs: [2, 3], tolerance: Self.reductionTolerance)
            let e = Float(abs(sums[0] - sums[1]) / abs(sums[1]))
            print("[backend] cross-entropy \(dtype) loss: \(e)")
            XCTAssertLessThanOrEqual(e, Self.reductionTolerance, "\(dtype) loss")
            check("cross-entropy \(dtype) dx", r, outputs: [1], tolerance: Self.reductionTolerance)
            check("cross-entropy \(dtype) head gradient", r, outputs: [4], tolerance: Self.reductionTolerance)
        }
    }

    /// Dropout's mask is the same function of (key, i) on both; bias, residual, scale, reductions
    /// and the AdamW update.
    func testElementwiseReductionsAndOptimizer() {
        let n = 1000
        let drop = both([random(n, seed: 91), random(n, seed: 0), random(n, seed: 92)]) { b, p in
            b.dropout(out: p[1], x: p[0], count: n, p: 0.3, key: 0xDEAD_BEEF_1234, accumulate: false)
            b.dropout(out: p[2], x: p[0], count: n, p: 0.3, key: 0xDEAD_BEEF_1234, accumulate: true)
        }
        check("dropout", drop, outputs: [1, 2], tolerance: 0)
        let dropped = drop.ref[1].filter { $0 == 0 }.count
        XCTAssertTrue((250...350).contains(dropped), "dropout dropped \(dropped) of \(n) at p = 0.3")
        let misc = both([random(6 * 20, seed: 93), random(20, seed: 94), random(20, seed: 95), random(6 * 20, seed: 96)]) { b, p in
            b.biasForward(y: p[0], bias: p[1], rows: 6, features: 20)
            b.biasBackward(dbias: p[2], dy: p[0], rows: 6, features: 20)
            b.add(p[3], p[0], count: 120)
            b.scale(p[3], count: 120, by: 0.7)
        }
        check("bias/add/scale", misc, outputs: [0, 2, 3], tolerance: Self.elementwiseTolerance)
        let columns = both([random(6 * 20, seed: 110), random(20, seed: 111), random(6 * 20, seed: 112), random(20, seed: 113),
                            random(6 * 20, seed: 114)]) { b, p in
            b.scaleColumns(out: p[2], x: p[0], scale: p[1], rows: 6, columns: 20, accumulate: true)
            b.scaleColumns(out: p[4], x: p[0], scale: p[1], rows: 6, columns: 20, accumulate: false)
            b.columnDots(out: p[3], p[0], p[2], rows: 6, columns: 20)
        }
        check("scaleColumns/columnDots", columns, outputs: [2, 3, 4], tolerance: Self.elementwiseTolerance)
        let x = random(n, seed: 97)
        let ss = x.withUnsafeBufferPointer { (cpu.sumOfSquares($0.baseAddress!, count: n), ref.sumOfSquares($0.baseAddress!, count: n)) }
        XCTAssertEqual(ss.0, ss.1, accuracy: 1e-12 * ss.1)
        let step = AdamWStep(decay: 0.999, oneMinusBeta1: 0.1, beta2: 0.999, oneMinusBeta2: 0.001, stepSize: 1e-3, bc2: 0.05,
                             epsilon: 1e-8)
        let adam = both([random(n, seed: 98), random(n, seed: 99), random(n, seed: 100, scale: 0.1),
                         random(n, seed: 101).map { $0 * $0 }]) { b, p in
            for _ in 0..<3 { b.adamWUpdate(value: p[0], grad: p[1], expAvg: p[2], expAvgSq: p[3], count: n, step: step) }
        }
        check("adamw", adam, outputs: [0, 2, 3], tolerance: Self.elementwiseTolerance)
    }

    /// bitsandbytes' 8-bit AdamW, f32 moments and blockwise 8-bit moments, three steps from the
    /// same state: parameters and f32 moments within the elementwise bound; the 8-bit moments'
    /// codes equal except where f64 and f32 arithmetic fall on two sides of a table entry's edge
    /// (measured: all 2000 equal here; the bound allows 1%), their absmax within the elementwise bound.
    func testAdamW8bitUpdate() {
        let n = 1000, bs = 256, blocks = (n + bs - 1) / bs
        let full = both([random(n, seed: 102), random(n, seed: 103), random(n, seed: 104, scale: 0.1),
                         random(n, seed: 105).map { $0 * $0 * 0.01 }]) { b, p in
            for t in 1...3 {
                let h = AdamW8bitStep(lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01, step: t)
                b.adamW8bitUpdate(value: p[0], grad: p[1], moments: .full(m: p[2], v: p[3]), count: n, step: h)
            }
        }
        check("adamw8bit f32 moments", full, outputs: [0, 2, 3], tolerance: Self.elementwiseTolerance)

        func run(_ b: any ComputeBackend) -> (value: [Float], codes: [UInt8], absmax: [Float]) {
            let x = Buffer(random(n, seed: 106)), g = Buffer(random(n, seed: 107))
            let mq = Buffer<UInt8>(count: n), vq = Buffer<UInt8>(count: n)
            let ma = Buffer<Float>(count: blocks), va = Buffer<Float>(count: blocks)
            for t in 1...3 {
                let h = AdamW8bitStep(lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01, step: t)
                b.adamW8bitUpdate(value: x.pointer, grad: g.pointer,
                                  moments: .blockwise(m: mq.pointer, mAbsmax: ma.pointer, v: vq.pointer, vAbsmax: va.pointer, blocksize: bs),
                                  count: n, step: h)
            }
            return (x.array, mq.array + vq.array, ma.array + va.array)
        }
        let c = run(cpu), r = run(ref)
        let valueError = error(c.value, r.value)
        print("[backend] adamw8bit blockwise value: \(valueError)")
        XCTAssertLessThanOrEqual(valueError, Self.elementwiseTolerance)
        let same = zip(c.codes, r.codes).filter { $0 == $1 }.count, absmaxError = error(c.absmax, r.absmax)
        print("[backend] adamw8bit blockwise codes equal: \(same) / \(2 * n); absmax: \(absmaxError)")
        XCTAssertGreaterThanOrEqual(same, 2 * n * 99 / 100)
        XCTAssertLessThanOrEqual(absmaxError, Self.elementwiseTolerance)
    }

    /// Backend names: the enum's raw values, an unknown name a typed error naming it and where it came from.
    func testBackendSelection() throws {
        XCTAssertEqual(try BackendKind.named("reference", source: "test"), .reference)
        XCTAssertEqual(try BackendKind.named("CPU", source: "test"), .cpu)
        XCTAssertTrue(try BackendKind.resolve(.reference) === ReferenceBackend.shared)
        XCTAssertThrowsError(try BackendKind.named("gpu", source: "--backend")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("'gpu'") && text.contains("--backend") && text.contains("reference"), text)
        }
    }
}
