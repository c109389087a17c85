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
        // Nesting: attention holding a product → the product's time counts once, as gemm, and the
        // attention gets the rest. Checked against the wall time of each part as measured here, so
        // a sleep that overruns on a loaded machine changes both sides alike.
        Profile.start()
        var outer = 0.0, inner = 0.0
        let t0 = Date()
        Profile.measure(.attention) {
            usleep(10_000)
            let t1 = Date()
            Profile.measure(.gemm, flops: 1) { _ = usleep(10_000) }
            inner = Date().timeIntervalSince(t1)
        }
        outer = Date().timeIntervalSince(t0)
        t = Profile.totals
        // Each part slept 10 ms at least; together they fit in the wall time (had the product's time
        // also been counted in the attention, the two would add up to ≥ 10 ms more than it).
        XCTAssertGreaterThanOrEqual(t[.gemm], 0.010)
        XCTAssertLessThanOrEqual(t[.gemm], inner + 1e-4)
        XCTAssertGreaterThanOrEqual(t[.attention], 0.010)
        XCTAssertLessThanOrEqual(t[.attention] + t[.gemm], outer + 1e-4)
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
