import CFinchKernels
@testable import FinchCore
import Foundation
import XCTest

/// The machine description every benchmark prints, and the OpenBLAS kernel choice.
final class CPUInfoTests: XCTestCase {
    /// On a CPU with AVX-512 (or AVX2) OpenBLAS runs that ISA's kernels, even where it fell back
    /// to generic ones when it loaded (Debian's build on a CPU model it does not know); a core set
    /// by OPENBLAS_CORETYPE is kept. The products it computes stay right.
    func testOpenBLASRunsThisCPUsKernels() {
        let m = 37, n = 29, k = 41
        var rng = SeededRandom(seed: 9)
        let a = (0..<(m * k)).map { _ in rng.nextUnit() - 0.5 }, b = (0..<(n * k)).map { _ in rng.nextUnit() - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        GEMM.f32Serial(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, bTransposed: true, c: &c, ldc: n, accumulate: false)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[j * k + p]) }
                XCTAssertEqual(Double(c[i * n + j]), s, accuracy: 1e-5)
            }
        }
        let core = GEMM.openBLASCore
        print("[cpu] \(CPUInfo.model); OpenBLAS core at load \(core.atLoad), in use \(core.inUse); kernels \(CPUInfo.kernelPath)")
        let generic = ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "unknown"]
        if generic.contains(core.atLoad.lowercased()) {
            if finch_cpu_avx512_level() > 0 {
                XCTAssertEqual(core.inUse.lowercased(), "skylakex")
            } else if finch_cpu_has_avx2() != 0 {
                XCTAssertEqual(core.inUse.lowercased(), "haswell")
            }
        } else {
            XCTAssertEqual(core.inUse, core.atLoad, "a core OpenBLAS chose (or OPENBLAS_CORETYPE named) is kept")
        }
    }

    /// The documented table: AMX → native; AMD with AVX512-BF16 → native; Intel with AVX512-BF16 and
    /// no AMX → f32; no AVX512-BF16 → f32.
    func testBF16ComputeTable() {
        XCTAssertEqual(GEMM.bf16Compute(vendor: "GenuineIntel", features: ["avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]), .native)
        XCTAssertEqual(GEMM.bf16Compute(vendor: "AuthenticAMD", features: ["avx2", "fma", "avx512f", "avx512_bf16"]), .native)
        XCTAssertEqual(GEMM.bf16Compute(vendor: "GenuineIntel", features: ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]), .f32)
        XCTAssertEqual(GEMM.bf16Compute(vendor: "AuthenticAMD", features: ["avx2", "fma"]), .f32)
        XCTAssertEqual(GEMM.bf16Compute(vendor: "GenuineIntel", features: ["avx2", "fma", "avx512f"]), .f32)
    }

    func testMeasuredPeaksAndSummary() {
        let f32 = CPUInfo.measuredPeak(bf16: false)
        if finch_cpu_has_avx2() != 0 {
            XCTAssertGreaterThan(f32 ?? 0, 1, "an FMA loop on every thread runs at more than 1 GFLOP/s")
        }
        let bf16 = CPUInfo.measuredPeak(bf16: true)
        XCTAssertEqual(bf16 != nil, finch_cpu_avx512_level() >= 2, "a bf16 peak exactly where the CPU has AVX512-BF16")
        // The bf16 path comes from the CPU's features (a table, GEMM.forThisCPU), never from these timings.
        XCTAssertEqual(GEMM.forThisCPU, GEMM.bf16Compute(vendor: CPUInfo.vendor, features: CPUInfo.features))
        if GEMM.bf16ComputeFromEnvironment == nil {
            XCTAssertEqual(GEMM.defaultBF16Compute, GEMM.forThisCPU)
        }
        let s = CPUInfo.summary
        for key in ["cpu", "vendor", "threads", "kernels", "bf16_compute", "openblas_core", "openblas_core_at_load", "openblas_coretype"] {
            XCTAssertNotNil(s[key], key)
        }
        print("[cpu] peaks f32 \(f32 ?? 0) GFLOP/s, bf16 \(bf16 ?? 0) GFLOP/s; \(s)")
    }
}
