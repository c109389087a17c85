import CFinchKernels
import FinchCore
@testable import FinchFormats
import XCTest

// Dimension letters: N weight rows, K columns, M activation rows, G groups of 32 columns.

/// The integer decoding kernel (`finch_block_gemv_q8`) on every block type it multiplies, on
/// random blocks (random bytes with finite scales, rows stored in reverse order), on each code
/// path the CPU has (portable, AVX2, and the detected one: AVX512-VNNI here): equal to float64 on
/// the Q8-quantized activations within float rounding, and to the exact product within the error
/// of the activations' quantization, stated per type.
final class BlockDotTests: XCTestCase {
    /// ggml types with a kernel, and the byte offsets of each block's f16 scales.
    static let types: [(GGMLType, [Int])] = [
        (.q4_0, [0]), (.q4_1, [0, 2]), (.q5_0, [0]), (.q5_1, [0, 2]), (.q8_0, [0]),
        (.q4_K, [0, 2]), (.q5_K, [0, 2]), (.q6_K, [208]),
    ]

    struct Generator {
        var g: SplitMix64
        mutating func unit() -> Float { Float(g.next() % 2_000_001) / 1_000_000 - 1 }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: g.next()) }
    }

    /// The kernel's activations, recomputed here: per group of 32, d = max|x| / 127 and q = round(x / d).
    static func quantized(_ x: [Float], rows m: Int, columns k: Int) -> [Double] {
        var out = [Double](repeating: 0, count: x.count)
        for r in 0..<m {
            for g in 0..<(k / 32) {
                let base = r * k + 32 * g
                let amax = x[base..<(base + 32)].map(abs).max()!
                let d = amax / 127, id = d > 0 ? 1 / d : 0
                for j in 0..<32 { out[base + j] = Double(d) * Double(min(127, max(-127, (x[base + j] * id).rounded(.toNearestOrEven)))) }
            }
        }
        return out
    }

    /// The available code paths: nil is the detected one.
    var paths: [String?] { finch_cpu_has_avx2() != 0 ? ["portable", "avx2", nil] : ["portable", nil] }

    /// Runs the kernel over every path, M = 1...4 and both accumulate modes against float64; returns
    /// the worst error against the exact product, relative to the largest |y|.
    func check(type: Int32, name: String, blocks: [UInt8], rowBytes: Int, rowScales: [Float]?, weights w: [Float],
               rows n: Int, columns k: Int, seed: UInt64) -> Double {
        let order = (0..<n).map { n - 1 - $0 }
        var gen = Generator(g: SplitMix64(seed: seed))
        var activationError = 0.0
        for m in 1...4 {
            var x = (0..<(m * k)).map { _ in gen.unit() }
            x[3] = 9   // an outlier: only its own group's scale grows
            let xq = Self.quantized(x, rows: m, columns: k)
            var wantQ = [Double](repeating: 0, count: m * n), wantX = wantQ, magnitude = wantQ
            for r in 0..<m {
                for o in 0..<n {
                    let row = order[o] * k
                    for i in 0..<k {
                        wantQ[r * n + o] += Double(w[row + i]) * xq[r * k + i]
                        wantX[r * n + o] += Double(w[row + i]) * Double(x[r * k + i])
                        magnitude[r * n + o] += abs(Double(w[row + i]) * xq[r * k + i])
                    }
                }
            }
            let groups = m * k / 32
            var q = [Int8](repeating: 0, count: m * k), ds = [Float](repeating: 0, count: 2 * groups)
            ds.withUnsafeMutableBufferPointer { f in finch_quantize_q8_groups(x, k, Int32(m), Int32(k), &q, f.baseAddress!, f.baseAddress! + groups) }
            for path in paths {
                XCTAssertEqual(finch_force_kernel_path(path), 1)
                defer { finch_force_kernel_path(nil) }
                for accumulate in [false, true] {
                    var y = [Float](repeating: accumulate ? 1 : .nan, count: m * n)
                    let ok = ds.withUnsafeBufferPointer { f in
                        finch_block_gemv_q8(type, blocks, rowBytes, order, rowScales, Int32(m), Int32(n), Int32(k), q,
                                            f.baseAddress!, f.baseAddress! + groups, &y, n, accumulate ? 1 : 0)
                    }
                    XCTAssertEqual(ok, 1, name)
                    let shift = accumulate ? 1.0 : 0
                    let worst = (0..<(m * n)).map { abs(Double(y[$0]) - shift - wantQ[$0]) / (magnitude[$0] + 1e-30) }.max()!
                    XCTAssertLessThan(worst, 2e-6, "\(name) \(path ?? "detected") M=\(m) accumulate=\(accumulate)")
                    let scale = wantX.map(abs).max()!
                    activationError = max(activationError, (0..<(m * n)).map { abs(Double(y[$0]) - shift - wantX[$0]) }.max()! / scale)
                }
            }
        }
        return activationError
    }

    func testEveryBlockTypeAgainstFloat64() throws {
        let n = 72, k = 512   // N·K ≥ 32768: the product splits across threads
        var errors: [String] = []
        for (t, scaleOffsets) in Self.types {
            XCTAssertEqual(finch_block_dot_supported(Int32(t.rawValue)), 1, t.name)
            var gen = Generator(g: SplitMix64(seed: UInt64(t.rawValue)))
            let rowBytes = k / t.blockSize * t.typeSize
            var blocks = (0..<(n * rowBytes)).map { _ in gen.byte() }
            for b in stride(from: 0, to: blocks.count, by: t.typeSize) {
                for o in scaleOffsets {
                    let h = Float16(gen.unit() * 0.02)
                    withUnsafeBytes(of: h.bitPattern.littleEndian) { blocks[b + o] = $0[0]; blocks[b + o + 1] = $0[1] }
                }
            }
            var w = [Float](repeating: 0, count: n * k)
            let kernel = try XCTUnwrap(GGMLDequantizer.kernel(for: t))
            blocks.withUnsafeBytes { src in w.withUnsafeMutableBufferPointer { kernel(src.baseAddress!, $0.baseAddress!, n * k / t.blockSize) } }
            let e = check(type: Int32(t.rawValue), name: t.name, blocks: blocks, rowBytes: rowBytes, rowScales: nil, weights: w,
                          rows: n, columns: k, seed: 11)
            errors.append("\(t.name) \(String(format: "%.2e", e))")
            // Measured here: 0.9e-2 to 1.5e-2 of max |y| for every type (the activations' rounding,
            // the outlier's group of 32 the coarsest).
            XCTAssertLessThan(e, 3e-2, "\(t.name): the Q8 activations' error")
        }
        // int8 rows with a scale each (Int8Product's form).
        var gen = Generator(g: SplitMix64(seed: 99))
        let values = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: gen.g.next() % 255) &- 127 }
        let scales = (0..<n).map { _ in abs(gen.unit()) * 0.01 + 1e-4 }
        let w = (0..<(n * k)).map { Float(values[$0]) * scales[$0 / k] }
        let e = check(type: FINCH_BLOCK_S8_ROWS, name: "int8 rows", blocks: values.map { UInt8(bitPattern: $0) }, rowBytes: k,
                      rowScales: scales, weights: w, rows: n, columns: k, seed: 12)
        errors.append("int8 rows \(String(format: "%.2e", e))")
        XCTAssertLessThan(e, 3e-2)
        print("Q8 activation error against float64 (max |Δy| / max |y|): " + errors.joined(separator: ", "))
    }

    /// What the kernel has no code for is declined, so the caller runs its float kernel; a NaN in
    /// the activations reaches the output.
    func testRefusalsAndNaN() {
        let k = 64, blocks = [UInt8](repeating: 0, count: 2 * 34)
        var q = [Int8](repeating: 0, count: 5 * k), ds = [Float](repeating: 0, count: 20), y = [Float](repeating: 0, count: 10)
        XCTAssertEqual(finch_block_dot_supported(Int32(GGMLType.q2_K.rawValue)), 0)
        XCTAssertEqual(finch_block_gemv_q8(Int32(GGMLType.q2_K.rawValue), blocks, 34, nil, nil, 1, 2, Int32(k), q, ds, ds, &y, 2, 0), 0)
        XCTAssertEqual(finch_block_gemv_q8(Int32(GGMLType.q8_0.rawValue), blocks, 34, nil, nil, 5, 2, Int32(k), q, ds, ds, &y, 2, 0), 0, "M > 4")
        XCTAssertEqual(finch_block_gemv_q8(Int32(GGMLType.q8_0.rawValue), blocks, 34, nil, nil, 1, 2, 48, q, ds, ds, &y, 2, 0), 0, "K % 32")
        XCTAssertEqual(finch_block_gemv_q8(FINCH_BLOCK_S8_ROWS, blocks, Int(k), nil, nil, 1, 2, Int32(k), q, ds, ds, &y, 2, 0), 0, "no row scales")
        var x = [Float](repeating: 0.5, count: k)
        x[40] = .nan
        var block = [UInt8](repeating: 1, count: 2 * 34)   // one row of two Q8_0 blocks
        withUnsafeBytes(of: Float16(0.5).bitPattern.littleEndian) { block[0] = $0[0]; block[1] = $0[1]; block[34] = $0[0]; block[35] = $0[1] }
        ds.withUnsafeMutableBufferPointer { f in
            finch_quantize_q8_groups(x, k, 1, Int32(k), &q, f.baseAddress!, f.baseAddress! + 2)
            XCTAssertEqual(finch_block_gemv_q8(Int32(GGMLType.q8_0.rawValue), block, 68, nil, nil, 1, 1, Int32(k), q,
                                               f.baseAddress!, f.baseAddress! + 2, &y, 1, 0), 1)
        }
        XCTAssertTrue(y[0].isNaN)
    }
}
