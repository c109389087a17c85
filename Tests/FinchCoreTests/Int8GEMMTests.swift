import CFinchKernels
@testable import FinchCore
import XCTest

/// Integer products (`GEMM.int8`, oneDNN's s8 × s8 → s32 matmul) against exact sums, for every
/// layout the linear layers use; the int8 peak probe reports the instructions it timed.
final class Int8GEMMTests: XCTestCase {
    func testProductsAreExactSums() throws {
        var rng = SplitMix64(seed: 5)
        func values(_ n: Int) -> [Int8] { (0..<n).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) } }
        for (m, n, k) in [(1, 7, 33), (5, 64, 96), (37, 29, 300)] {
            for (at, bt) in [(false, true), (false, false), (true, false)] {
                let a = values(m * k), b = values(k * n)
                var c = [Int32](repeating: 3, count: m * n)
                func want(_ i: Int, _ j: Int) -> Int32 {
                    var s: Int32 = 0
                    for p in 0..<k {
                        let x = at ? a[p * m + i] : a[i * k + p], y = bt ? b[j * k + p] : b[p * n + j]
                        s += Int32(x) * Int32(y)
                    }
                    return s
                }
                for accumulate in [false, true] {
                    try GEMM.int8(m: m, n: n, k: k, a: a, lda: at ? m : k, aTransposed: at, b: b, ldb: bt ? k : n, bTransposed: bt,
                                  c: &c, ldc: n, accumulate: accumulate)
                    for i in 0..<m {
                        for j in 0..<n {
                            XCTAssertEqual(c[i * n + j], (accumulate ? 2 : 1) * want(i, j), "M \(m) N \(n) K \(k) aT \(at) bT \(bt) acc \(accumulate)")
                        }
                    }
                }
            }
        }
    }

    func testInt8PeakIsMeasuredWithTheCPUsInstructions() {
        let dot = CPUInfo.int8Dot
        print("[cpu] int8 dot products: \(dot); peak \(CPUInfo.measuredInt8Peak.map { String(format: "%.0f GOP/s", $0) } ?? "none")")
        XCTAssertEqual(dot == "avx512_vnni", CPUInfo.features.contains("avx512_vnni") && finch_cpu_avx512_level() > 0)
        if finch_cpu_has_avx2() != 0 { XCTAssertGreaterThan(CPUInfo.measuredInt8Peak ?? 0, 0) }
    }
}
