@testable import FinchCore
import CFinchKernels
import XCTest

// Dimension letters: M rows, O output features, I input features.

/// SwitchBack's integer products (`Int8Product`): exactly the scaled integer sums of the int8
/// operands (float64 reference of the same integers: f32 rounding only), and within int8
/// rounding of the float products; a linear multiplies its int8 form above the decoding rows.
final class Int8ProductTests: XCTestCase {
    let m = 9, o = 48, i = 80

    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var g = SplitMix64(seed: seed)
        return (0..<n).map { _ in (Float(g.next() % 2_000_001) / 1_000_000 - 1) * scale }
    }

    /// max |a − b| / max |b|.
    func error(_ a: [Float], _ b: [Double]) -> Double {
        zip(a, b).map { abs(Double($0) - $1) }.max()! / b.map(abs).max()!
    }

    func testProductsAreTheScaledIntegerSums() throws {
        let w = random(o * i, seed: 1, scale: 0.05), x = random(m * i, seed: 2), dy = random(m * o, seed: 3, scale: 0.01)
        let p = Int8Product(values: w, rows: o, columns: i)
        let scratch = Scratch()
        var y = [Float](repeating: 0, count: m * o), dx = [Float](repeating: 0, count: m * i)
        try p.forward(y: &y, x: x, rows: m, accumulate: false, scratch: scratch)
        try p.backwardInput(dx: &dx, dy: dy, rows: m, accumulate: false, scratch: scratch)

        // The same integers and scales, summed in float64.
        var xq = [Int8](repeating: 0, count: m * i), sx = [Float](repeating: 0, count: m)
        Int8Product.quantizeRows(x, rows: m, columns: i, columnFactors: nil, into: &xq, scales: &sx)
        var gq = [Int8](repeating: 0, count: m * o), sg = [Float](repeating: 0, count: m)
        Int8Product.quantizeRows(dy, rows: m, columns: o, columnFactors: p.scale.pointer, into: &gq, scales: &sg)
        var yInt = [Double](repeating: 0, count: m * o), dxInt = [Double](repeating: 0, count: m * i)
        var yFloat = yInt, dxFloat = dxInt
        for r in 0..<m {
            for a in 0..<o {
                var s = 0, f = 0.0
                for b in 0..<i { s += Int(xq[r * i + b]) * Int(p.weight[a * i + b]); f += Double(x[r * i + b]) * Double(w[a * i + b]) }
                yInt[r * o + a] = Double(s) * Double(sx[r]) * Double(p.scale[a]); yFloat[r * o + a] = f
            }
            for b in 0..<i {
                var s = 0, f = 0.0
                for a in 0..<o { s += Int(gq[r * o + a]) * Int(p.weight[a * i + b]); f += Double(dy[r * o + a]) * Double(w[a * i + b]) }
                dxInt[r * i + b] = Double(s) * Double(sg[r]); dxFloat[r * i + b] = f
            }
        }
        XCTAssertLessThan(error(y, yInt), 1e-6, "forward: the integer sums, scaled")
        XCTAssertLessThan(error(dx, dxInt), 1e-6, "input gradient: the integer sums, scaled")
        // Against the float products: int8 rounding of both operands (measured 0.0043 forward,
        // 0.0060 input gradient on these inputs; the bounds are ~3x).
        let ef = error(y, yFloat), eb = error(dx, dxFloat)
        print("[int8] forward error \(ef), input gradient error \(eb) (of the largest value)")
        XCTAssertLessThan(ef, 0.015)
        XCTAssertLessThan(eb, 0.02)
        // accumulate adds onto what is there
        var again = y
        try p.forward(y: &again, x: x, rows: m, accumulate: true, scratch: scratch)
        XCTAssertEqual(again, y.map { 2 * $0 })
    }

    /// A column far larger than the others (LLMs' outlier features) is multiplied in f32, so the
    /// other columns keep their resolution: the error stays that of plain int8 rounding (measured
    /// 0.0039 of the largest value here; bound ~3x).
    func testOutlierColumnsRunInFloat() throws {
        let w = random(o * i, seed: 5, scale: 0.05)
        var x = random(m * i, seed: 6)
        for r in 0..<m { x[r * i + 17] *= 60 }
        XCTAssertEqual(Int8Product.outlierColumns(x, rows: m, columns: i, factors: nil), [17])
        let p = Int8Product(values: w, rows: o, columns: i)
        var y = [Float](repeating: 0, count: m * o)
        try p.forward(y: &y, x: x, rows: m, accumulate: false, scratch: Scratch())
        var want = [Double](repeating: 0, count: m * o)
        for r in 0..<m { for a in 0..<o { for b in 0..<i { want[r * o + a] += Double(x[r * i + b]) * Double(w[a * i + b]) } } }
        let e = error(y, want)
        print("[int8] forward error with an outlier column: \(e)")
        XCTAssertLessThan(e, 0.015)
    }

    /// With outlier columns in both operands, forward and input gradient are exactly the scaled integer
    /// sums of the other columns plus the outlier columns' f32 products (float64 reference of the same
    /// operands: f32 rounding only), whether the output is overwritten or added to, on every kernel
    /// path this CPU has (AVX-512, portable C).
    func testOutlierSplitIsTheIntegerSumsPlusTheFloatColumns() throws {
        let paths = ["portable"] + (finch_cpu_avx512_level() > 0 ? ["avx512"] : [])
        defer { finch_force_kernel_path(nil) }
        for path in paths {
            XCTAssertEqual(finch_force_kernel_path(path), 1)
            try outlierSplit(m: m, o: o, i: i)
            try outlierSplit(m: 200, o: 200, i: 152)   // rows over both threads, columns not a multiple of 16
        }
    }

    func outlierSplit(m: Int, o: Int, i: Int) throws {
        let w = random(o * i, seed: 7, scale: 0.05)
        var x = random(m * i, seed: 8), dy = random(m * o, seed: 9, scale: 0.01)
        for r in 0..<m { x[r * i + 3] *= 40; x[r * i + 61] *= 25; dy[r * o + 11] *= 50 }
        let p = Int8Product(values: w, rows: o, columns: i)
        let jx = Int8Product.outlierColumns(x, rows: m, columns: i, factors: nil)
        let jg = Int8Product.outlierColumns(dy, rows: m, columns: o, factors: p.scale.pointer)
        XCTAssertEqual(jx, [3, 61]); XCTAssertEqual(jg, [11])
        let start = random(m * max(o, i), seed: 10)
        for accumulate in [false, true] {
            var y = Array(start.prefix(m * o)), dx = Array(start.prefix(m * i))
            try p.forward(y: &y, x: x, rows: m, accumulate: accumulate, scratch: Scratch())
            try p.backwardInput(dx: &dx, dy: dy, rows: m, accumulate: accumulate, scratch: Scratch())
            var fx = [Float](repeating: 1, count: i), fg = (0..<o).map { p.scale[$0] }
            for j in jx { fx[j] = 0 }
            for j in jg { fg[j] = 0 }
            var xq = [Int8](repeating: 0, count: m * i), sx = [Float](repeating: 0, count: m)
            Int8Product.quantizeRows(x, rows: m, columns: i, columnFactors: fx, into: &xq, scales: &sx)
            var gq = [Int8](repeating: 0, count: m * o), sg = [Float](repeating: 0, count: m)
            Int8Product.quantizeRows(dy, rows: m, columns: o, columnFactors: fg, into: &gq, scales: &sg)
            var wantY = [Double](repeating: 0, count: m * o), wantDx = [Double](repeating: 0, count: m * i)
            for r in 0..<m {
                for a in 0..<o {
                    var s = 0, f = 0.0
                    for b in 0..<i { s += Int(xq[r * i + b]) * Int(p.weight[a * i + b]) }
                    for b in jx { f += Double(x[r * i + b]) * Double(p.weight[a * i + b]) * Double(p.scale[a]) }
                    wantY[r * o + a] = Double(s) * Double(sx[r]) * Double(p.scale[a]) + f + (accumulate ? Double(start[r * o + a]) : 0)
                }
                for b in 0..<i {
                    var s = 0, f = 0.0
                    for a in 0..<o { s += Int(gq[r * o + a]) * Int(p.weight[a * i + b]) }
                    for a in jg { f += Double(dy[r * o + a]) * Double(p.weight[a * i + b]) * Double(p.scale[a]) }
                    wantDx[r * i + b] = Double(s) * Double(sg[r]) + f + (accumulate ? Double(start[r * i + b]) : 0)
                }
            }
            XCTAssertLessThan(error(y, wantY), 1e-6, "forward, accumulate \(accumulate)")
            XCTAssertLessThan(error(dx, wantDx), 1e-6, "input gradient, accumulate \(accumulate)")
        }
    }

    /// Weights multiplying one input in turn inside `sharingInput` (q, k, v) reuse its int8 form and
    /// give the same outputs bit for bit as each quantizing it; another input, or fewer rows of it, is
    /// quantized anew.
    func testSharedInputIsQuantizedOnceWithTheSameResults() throws {
        let weights = (0..<3).map { Int8Product(values: random((o + $0) * i, seed: 20 + UInt64($0), scale: 0.05), rows: o + $0, columns: i) }
        var x = random(m * i, seed: 23)
        for r in 0..<m { x[r * i + 5] *= 30 }   // with an outlier column
        let other = random(m * i, seed: 24)
        func run(_ p: Int8Product, _ input: [Float], rows: Int, _ scratch: Scratch) throws -> [Float] {
            var y = [Float](repeating: 0, count: rows * p.rows)
            try input.withUnsafeBufferPointer { try p.forward(y: &y, x: $0.baseAddress!, rows: rows, accumulate: false, scratch: scratch) }
            return y
        }
        let alone = try weights.map { try run($0, x, rows: m, Scratch()) }
        let scratch = Scratch()
        try x.withUnsafeBufferPointer { xp in
            try scratch.sharingInput(xp.baseAddress!) {
                for (p, want) in zip(weights, alone) {
                    var y = [Float](repeating: 0, count: m * p.rows)
                    try p.forward(y: &y, x: xp.baseAddress!, rows: m, accumulate: false, scratch: scratch)
                    XCTAssertEqual(y, want)
                    XCTAssertEqual(scratch.sharedInt8?.outliers, [5])
                    // another input in between does not disturb the shared form
                    XCTAssertEqual(try run(p, other, rows: m, scratch), try run(p, other, rows: m, Scratch()))
                }
                var y = [Float](repeating: 0, count: 3 * o)
                try weights[0].forward(y: &y, x: xp.baseAddress!, rows: 3, accumulate: false, scratch: scratch)
                XCTAssertEqual(y, try run(weights[0], Array(x.prefix(3 * i)), rows: 3, Scratch()))
            }
        }
        XCTAssertNil(scratch.sharedInput)
    }

    func testRowsOfZerosAndNonFiniteValues() {
        var q = [Int8](repeating: 5, count: 6), s = [Float](repeating: 0, count: 2)
        Int8Product.quantizeRows([0, 0, 0, 1, .nan, 2], rows: 2, columns: 3, columnFactors: nil, into: &q, scales: &s)
        XCTAssertEqual(Array(q[0..<3]), [0, 0, 0])
        XCTAssertEqual(s[0], 1)
        XCTAssertTrue(s[1].isNaN, "a NaN reaches the output instead of vanishing")
    }

    /// A linear with int8 products multiplies its int8 form for prompts and gradients, its own
    /// weights for decoding rows; turning it off restores the float products bit for bit.
    func testLinearUsesItsInt8FormAboveDecodingRows() throws {
        let w = random(o * i, seed: 4, scale: 0.05)
        let lin = LinearWeight(outFeatures: o, inFeatures: i, values: Buffer(w), dtype: .f32)
        let scratch = Scratch()
        func forward(_ rows: Int) -> [Float] {
            let x = random(rows * i, seed: UInt64(rows)), y = Buffer<Float>(count: rows * o)
            lin.forward(y: y.pointer, x: x, rows: rows, scratch: scratch)
            return y.array
        }
        let floatSmall = forward(2), floatLarge = forward(m)
        lin.useInt8Products()
        XCTAssertEqual(lin.byteCount, o * i * 4 + o * i + o * 4)
        XCTAssertEqual(forward(2), floatSmall, "decoding rows keep the float kernel")
        let int8Large = forward(m)
        XCTAssertNotEqual(int8Large, floatLarge)
        var direct = [Float](repeating: 0, count: m * o)
        try lin.int8!.forward(y: &direct, x: random(m * i, seed: UInt64(m)), rows: m, accumulate: false, scratch: scratch)
        XCTAssertEqual(int8Large, direct)
        lin.useInt8Products(false)
        XCTAssertEqual(forward(m), floatLarge)
    }
}
