@testable import FinchCore
import Foundation
import XCTest

final class ProfileTests: XCTestCase {
    /// Products count their flops; a region inside another is taken out of the outer one; nothing
    /// is recorded while profiling is off or from another thread.
    func testRegionsAreExclusiveAndProductsCountFlops() {
        let m = 64, n = 48, k = 32
        let a = Buffer<Float>(count: m * k), b = Buffer<Float>(count: k * n), c = Buffer<Float>(count: m * n)
        GEMM.f32(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
        Profile.start()
        defer { Profile.stop() }
        XCTAssertEqual(Profile.totals.gemmCalls, 0, "calls before start are not counted")
        GEMM.f32(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
        let ab = [BF16Bits](repeating: 0x3F80, count: m * k), bb = [BF16Bits](repeating: 0x3F80, count: k * n)
        for mode in [GEMM.BF16Compute.native, .f32] {
            GEMM.withBF16Compute(mode) {
                GEMM.bf16(m: m, n: n, k: k, a: ab, lda: k, b: bb, ldb: n, bTransposed: false, c: c.pointer, ldc: n, accumulate: false)
            }
        }
        var t = Profile.totals
        XCTAssertEqual(t.gemmCalls, 3, "a bf16 product computed as f32 is one product")
        XCTAssertEqual(t.gemmFlops, 3 * 2 * Double(m * n * k))
        XCTAssertGreaterThan(t[.bf16Convert], 0, "widening the operands is timed apart")
        // Nesting: 20 ms of attention holding 10 ms of a product → ~10 ms each.
        Profile.start()
        Profile.measure(.attention) {
            usleep(10_000)
            Profile.measure(.gemm, flops: 1) { _ = usleep(10_000) }
        }
        t = Profile.totals
        XCTAssertEqual(t[.attention], 0.010, accuracy: 0.008)
        XCTAssertEqual(t[.gemm], 0.010, accuracy: 0.008)
        XCTAssertLessThan(abs(t[.attention] + t[.gemm] - 0.020), 0.010)
        // Another thread's calls are not this thread's step.
        let other = Thread { Profile.measure(.dequantize) { _ = usleep(5_000) } }
        other.start()
        while !other.isFinished { usleep(1_000) }
        XCTAssertEqual(Profile.totals[.dequantize], 0)
        Profile.stop()
        Profile.measure(.dequantize) { _ = usleep(1_000) }
        XCTAssertEqual(Profile.totals[.dequantize], 0, "off after stop")
    }
}
