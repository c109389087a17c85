import CFinchKernels
import Foundation

/// What this machine is, for every benchmark line: the CPU, the ISA Finch's kernels use, the
/// OpenBLAS kernels, and the arithmetic peak measured here (so that a GEMM's GFLOP/s can be read
/// as a share of what this CPU can do).
public enum CPUInfo {
    /// The first processor's "key: value" lines of `/proc/cpuinfo` (empty where there is none).
    private static let cpuinfo: [String: String] = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [:] }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { break }   // the end of the first processor
            let kv = line.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            fields[kv[0].trimmingCharacters(in: .whitespaces)] = kv[1].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }()

    /// The CPU's model name (`/proc/cpuinfo`).
    public static let model: String = cpuinfo["model name"] ?? "unknown"

    /// The CPU's vendor id (`GenuineIntel`, `AuthenticAMD`, ...; /proc/cpuinfo).
    public static let vendor: String = cpuinfo["vendor_id"] ?? "unknown"

    /// The x86 features that decide Finch's paths, as /proc/cpuinfo names them.
    public static let features: [String] = {
        let have = Set((cpuinfo["flags"] ?? "").split(separator: " ").map(String.init))
        return ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"].filter(have.contains)
    }()

    /// The path of Finch's own C kernels: avx512 (with bf16 dot products when the CPU has them), avx2, portable.
    public static var kernelPath: String {
        let p = String(cString: finch_kernel_path())
        return p == "avx512" && finch_cpu_avx512_level() >= 2 ? "avx512+bf16" : p
    }

    /// The peak GFLOP/s of all of Finch's threads together, measured once per process by timing a
    /// multiply-add loop on every thread (f32 FMA, or AVX512-BF16 dot products); nil when the CPU
    /// has no such instructions.
    public static func measuredPeak(bf16: Bool) -> Double? { bf16 ? peakBF16 : peakF32 }

    /// The peak int8 GOP/s (a multiply and an add per u8 × s8 pair) of all of Finch's threads,
    /// measured as `measuredPeak`: VNNI dot products where the CPU has them, else AVX2's; nil
    /// without AVX2.
    public static var measuredInt8Peak: Double? { peakInt8 }

    /// The CPU's integer dot-product instructions: "avx512_vnni", "avx_vnni" or "none".
    public static var int8Dot: String { ["none", "avx_vnni", "avx512_vnni"][Int(finch_cpu_int8_dot())] }

    private static let peakF32 = measure { finch_peak_probe(0, $0) }, peakBF16 = measure { finch_peak_probe(1, $0) }
    private static let peakInt8 = measure { finch_peak_probe_int8($0) }

    /// The best of three timed rounds of `probe` (operations done for an iteration count) on every thread.
    private static func measure(_ probe: @escaping @Sendable (Int) -> Double) -> Double? {
        if probe(1) == 0 { return nil }
        let threads = Parallel.threadCount
        let iterations = 8_000_000   // ~20 ms a round
        var best = 0.0
        Parallel.forEachRange(threads, costPerItem: 1, grain: 0) { _ in _ = probe(iterations / 8) }   // wake the team
        for _ in 0..<3 {
            let flops = UnsafeMutablePointer<Double>.allocate(capacity: threads)
            defer { flops.deallocate() }
            flops.initialize(repeating: 0, count: threads)
            let t0 = Date()
            Parallel.forEachRange(threads, costPerItem: 1, grain: 0) { r in
                for t in r { flops[t] = probe(iterations) }
            }
            let seconds = Date().timeIntervalSince(t0)
            best = max(best, (0..<threads).reduce(0) { $0 + flops[$1] } / seconds / 1e9)
        }
        return best
    }

    /// The machine for a benchmark line: CPU, threads, kernel path, OpenBLAS cores, OPENBLAS_CORETYPE,
    /// ONEDNN_MAX_CPU_ISA (a cap on oneDNN's instruction set: its GEMMs' path).
    public static var summary: [String: String] {
        let blas = GEMM.openBLASCore
        return ["cpu": model, "vendor": vendor, "threads": String(Parallel.threadCount), "kernels": kernelPath, "int8_dot": int8Dot,
                "bf16_compute": GEMM.bf16Compute.rawValue,
                "features": features.joined(separator: " "), "openblas_core": blas.inUse,
                "openblas_core_at_load": blas.atLoad,
                "openblas_coretype": ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset",
                "onednn_max_cpu_isa": ProcessInfo.processInfo.environment["ONEDNN_MAX_CPU_ISA"] ?? "unset"]
    }
}
