import CFinchKernels
import FinchCore
import FinchFormats
import FinchTestSupport
@testable import FinchQuant
import XCTest

/// The code value element `e` stores: the high nibble of byte e/2 when e is even, else the low one.
func codeValue(_ q: FourBitTensor, _ e: Int) -> Float {
    q.code[Int(e % 2 == 0 ? q.packed[e / 2] >> 4 : q.packed[e / 2] & 15)]
}

/// Finch's 4-bit quantization against bitsandbytes 0.50 (Tests/Fixtures/bnb, made by
/// Scripts/fixtures/make_bnb_goldens.py): three tensors × NF4/FP4 × blocksize 64/128 × with/without
/// double quantization. Packed bytes and 8-bit nested codes must be identical, float32 scales and
/// dequantized values equal (the check allows 1e-6 relative; measured: identical).
///
/// The dequantized reference is bitsandbytes' `dequantize_4bit` on the flat shape, which the fixture
/// script checks against a NumPy dequantizer written from bnb's packed bytes and absmax: for SmolLM2's
/// q_proj with blocksize 128 (blocks straddle rows) bnb's 2-D CPU path indexes absmax per row and is
/// wrong there, so the fixture does not use it; nothing here is rebuilt from Finch's own codes.
final class BitsAndBytesTests: XCTestCase {
    static let cases = ["randn_256x512", "odd_100x77", "smollm2_l0_q_proj"]

    func file(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.required("bnb/\(name).safetensors"))
    }

    func bytes(_ f: SafeTensorsFile, _ name: String) throws -> [UInt8] { Array(try f.bytes(name)) }

    func testDynamicMapsMatch() throws {
        let f = try file("dynamic_maps")
        XCTAssertEqual(DynamicMap.signed, try f.floats("dynamic_map_signed"))
        XCTAssertEqual(DynamicMap.unsigned, try f.floats("dynamic_map_unsigned"))
    }

    func testQuantizeMatchesBitsAndBytes() throws {
        var worst: Float = 0
        for c in Self.cases {
            let f = try file(c)
            let input = try f.floats("\(c).input")
            let shape = f.info("\(c).input")!.shape
            for type in FourBitType.allCases {
                for bs in [64, 128] {
                    for dq in [false, true] {
                        let key = "\(c).\(type.rawValue).bs\(bs).\(dq ? "dq" : "nodq")"
                        XCTAssertEqual(type.code, try f.floats("\(key).code"), key)
                        let q = try input.withUnsafeBufferPointer {
                            try FourBitTensor.quantize($0, shape: shape, type: type, blocksize: bs, doubleQuant: dq)
                        }
                        let packed = try bytes(f, "\(key).packed")
                        let mismatches = zip(q.packed.array, packed).filter { $0 != $1 }.count
                        XCTAssertEqual(q.packed.count, packed.count, key)
                        XCTAssertEqual(mismatches, 0, "\(key): \(mismatches) of \(packed.count) packed bytes differ")
                        switch q.scales {
                        case .plain(let a):
                            XCTAssertFalse(dq)
                            XCTAssertEqual(a.array, try f.floats("\(key).absmax"), key)
                        case .nested(let n):
                            XCTAssertTrue(dq)
                            XCTAssertEqual(n.offset, try f.floats("\(key).offset")[0], key)
                            let codes = try bytes(f, "\(key).absmax")
                            let diff = zip(n.codes.array, codes).filter { $0 != $1 }.count
                            XCTAssertEqual(diff, 0, "\(key): \(diff) of \(codes.count) nested codes differ")
                            XCTAssertEqual(n.absmax.array, try f.floats("\(key).nested_absmax"), key)
                            XCTAssertEqual(n.code, try f.floats("\(key).nested_code"), key)
                        }
                        let deq = q.dequantize().array
                        let ref = try f.floats("\(key).dequantized")
                        XCTAssertEqual(deq.count, ref.count)
                        let norm = ref.reduce(0) { max($0, abs($1)) }
                        let d = maxAbsDiff(deq, ref)
                        worst = max(worst, d / norm)
                        XCTAssertLessThanOrEqual(d, 1e-6 * norm, key)
                    }
                }
            }
        }
        print("worst dequantized |Finch − bitsandbytes| / absmax over every variant: \(worst)")
    }

    /// bitsandbytes' `matmul_4bit` (x · dequant(W)ᵀ, NF4 + double quantization, blocksize 64).
    func testMatmulMatchesBitsAndBytes() throws {
        for c in Self.cases {
            let f = try file(c)
            let input = try f.floats("\(c).input")
            let shape = f.info("\(c).input")!.shape
            let x = try f.floats("\(c).matmul.x"), ref = try f.floats("\(c).matmul.y")
            let q = try input.withUnsafeBufferPointer {
                try FourBitTensor.quantize($0, shape: shape, type: .nf4, blocksize: 64, doubleQuant: true)
            }
            let w = q.dequantize()
            let (n, k) = (shape[0], shape[1]), m = x.count / k
            var y = [Float](repeating: 0, count: m * n)
            for i in 0..<m { for j in 0..<n {
                var s: Double = 0
                for l in 0..<k { s += Double(x[i * k + l]) * Double(w[j * k + l]) }
                y[i * n + j] = Float(s)
            } }
            let norm = sqrt(ref.reduce(0) { $0 + Double($1) * Double($1) })
            let err = sqrt(zip(y, ref).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) })
            XCTAssertLessThanOrEqual(err / norm, 1e-6, c)
        }
    }
}

/// The SIMD dequantizer against the scalar definition, over ranges that start and end anywhere.
final class DequantKernelTests: XCTestCase {
    func testRangesMatchDefinition() throws {
        var rng = SeededRandom(seed: 7)
        let values = (0..<(3 * 4096 + 77)).map { _ in rng.nextGaussian() }
        for type in FourBitType.allCases {
            for bs in [32, 64, 256] {
                for dq in [false, true] {
                    let q = try values.withUnsafeBufferPointer {
                        try FourBitTensor.quantize($0, shape: [values.count], type: type, blocksize: bs, doubleQuant: dq)
                    }
                    let a = q.absmax()
                    let expected = (0..<values.count).map { codeValue(q, $0) * a[$0 / bs] }
                    for (start, count) in [(0, values.count), (1, 100), (31, 33), (63, 4000), (4097, values.count - 4097), (5, 0)] {
                        var out = [Float](repeating: .nan, count: count)
                        out.withUnsafeMutableBufferPointer { q.dequantize(elements: start, count: count, absmax: a, into: $0.baseAddress!) }
                        XCTAssertEqual(out, Array(expected[start..<(start + count)]), "\(type) bs\(bs) \(start)+\(count)")
                    }
                    // Quantizing the dequantized values again gives the same values (codes are fixed
                    // points; compared as values: FP4's two zero nibbles decode alike).
                    let again = try expected.withUnsafeBufferPointer {
                        try FourBitTensor.quantize($0, shape: [values.count], type: type, blocksize: bs)
                    }
                    XCTAssertEqual(again.dequantize().array, expected, "\(type) bs\(bs) requantized")
                }
            }
        }
    }

    /// The fused decode product (`multiplySmall`, straight from the nibbles) against the
    /// dequantized weight multiplied in double precision, on every code path this CPU runs:
    /// M = 1…5 rows of x, plain and double-quantized scales, odd N, accumulate.
    func testFusedSmallProductMatchesDequantizedWeight() throws {
        var rng = SeededRandom(seed: 11)
        let native = String(cString: finch_kernel_path())
        let paths = native == "portable" ? ["portable"] : ["portable", native]
        // (64, 131, 576) is large enough to run on every thread, with a last share that is not 16 rows.
        for (bs, n, k) in [(64, 37, 576), (32, 19, 96), (128, 21, 384), (256, 5, 512), (64, 131, 576)] {
            let values = (0..<(n * k)).map { _ in rng.nextGaussian() }
            for type in FourBitType.allCases {
                for dq in [false, true] {
                    let q = try values.withUnsafeBufferPointer {
                        try FourBitTensor.quantize($0, shape: [n, k], type: type, blocksize: bs, doubleQuant: dq)
                    }
                    let w = q.dequantize()
                    for m in 1...5 {
                        let x = (0..<(m * k)).map { _ in rng.nextGaussian() }
                        var expected = [Double](repeating: 0, count: m * n), scale = [Double](repeating: 0, count: m * n)
                        for r in 0..<m {
                            for o in 0..<n {
                                for i in 0..<k {
                                    expected[r * n + o] += Double(x[r * k + i]) * Double(w[o * k + i])
                                    scale[r * n + o] += abs(Double(x[r * k + i]) * Double(w[o * k + i]))
                                }
                            }
                        }
                        for p in paths {
                            XCTAssertEqual(finch_force_kernel_path(p), 1)
                            for accumulate in [false, true] {
                                var y = [Float](repeating: accumulate ? 1 : .nan, count: m * n)
                                let ok = y.withUnsafeMutableBufferPointer { yp in
                                    x.withUnsafeBufferPointer { q.multiplySmall(y: yp.baseAddress!, x: $0.baseAddress!, rows: m, accumulate: accumulate) }
                                }
                                XCTAssertTrue(ok)
                                let worst = (0..<(m * n)).map { abs(Double(y[$0]) - expected[$0] - (accumulate ? 1 : 0)) / (scale[$0] + 1e-30) }.max()!
                                XCTAssertLessThan(worst, 2e-6, "\(p) \(type) bs\(bs) dq=\(dq) m=\(m) accumulate=\(accumulate)")
                            }
                        }
                        finch_force_kernel_path(nil)
                    }
                }
            }
        }
        // A row that does not start on a block is declined (the caller expands instead).
        let odd = try [Float](repeating: 0.5, count: 3 * 96).withUnsafeBufferPointer {
            try FourBitTensor.quantize($0, shape: [3, 96], type: .nf4, blocksize: 64)
        }
        var y = [Float](repeating: 0, count: 3)
        let x = [Float](repeating: 1, count: 96)
        XCTAssertFalse(y.withUnsafeMutableBufferPointer { yp in x.withUnsafeBufferPointer { odd.multiplySmall(y: yp.baseAddress!, x: $0.baseAddress!, rows: 1, accumulate: false) } })
    }

    /// The vectorized quantizer gives the portable one's bytes and scales on awkward values: zero
    /// and NaN blocks, infinities, ±0, values exactly on a bucket boundary, a partial last block.
    func testQuantizeKernelPathsAgree() throws {
        var rng = SeededRandom(seed: 7)
        let native = String(cString: finch_kernel_path())
        for type in FourBitType.allCases {
            let (_, bounds) = type.buckets
            for bs in [32, 64, 256] {
                var v = (0..<(bs * 9 + 13)).map { _ in rng.nextGaussian() }
                for i in 0..<bs { v[i] = 0 }                                   // block 0: zeros
                v[bs] = .nan; v[bs + 3] = -.nan                                // block 1: NaNs
                v[2 * bs] = .infinity; v[2 * bs + 1] = -0.0                    // block 2: inf
                for (j, b) in bounds.enumerated() { v[3 * bs + j] = b * 2; v[3 * bs + 16 + j] = b.nextUp * 2 }
                v[3 * bs + 31] = 2                                             // block 3: absmax 2, values on boundaries
                v[4 * bs + 5] = -.infinity
                var results: [(String, [UInt8], [Float])] = []
                for p in native == "portable" ? ["portable"] : ["portable", native] {
                    XCTAssertEqual(finch_force_kernel_path(p), 1)
                    let q = try v.withUnsafeBufferPointer { try FourBitTensor.quantize($0, shape: [v.count], type: type, blocksize: bs) }
                    results.append((p, q.packed.array, q.absmax().array))
                }
                finch_force_kernel_path(nil)
                for r in results.dropFirst() {
                    XCTAssertEqual(r.1, results[0].1, "\(type) bs\(bs): \(r.0) bytes differ from portable")
                    XCTAssertEqual(r.2.map(\.bitPattern), results[0].2.map(\.bitPattern), "\(type) bs\(bs): \(r.0) absmax differs")
                }
            }
        }
    }

    /// Expanding for a bf16 product rounds each value as BFloat16.round does, on every path.
    func testDequantizeRoundedToBF16IsTheRoundedExpansion() throws {
        var rng = SeededRandom(seed: 3)
        let v = (0..<(64 * 50 + 32)).map { _ in rng.nextGaussian() * 3 }
        for dq in [false, true] {
            let q = try v.withUnsafeBufferPointer { try FourBitTensor.quantize($0, shape: [v.count], type: .nf4, blocksize: 64, doubleQuant: dq) }
            let plain = q.dequantize()
            var expected = [Float](repeating: 0, count: v.count)
            BFloat16.round(plain.pointer, to: &expected, count: v.count)
            XCTAssertNotEqual(expected, plain.array, "rounding changes some values")
            var got = [Float](repeating: .nan, count: v.count)
            q.dequantizeRoundedToBF16(into: &got)
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern))
        }
    }

    func testRejectsBadBlocksize() {
        XCTAssertThrowsError(try [Float](repeating: 1, count: 8).withUnsafeBufferPointer {
            try FourBitTensor.quantize($0, shape: [8], type: .nf4, blocksize: 48)
        }) { XCTAssertEqual($0 as? QuantError, .invalidBlocksize(48)) }
    }
}
