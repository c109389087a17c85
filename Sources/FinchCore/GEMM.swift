import CDNNL
import CFinchKernels
import COpenBLAS
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element type of the operands of a matrix product.
public enum GEMMType: Sendable, Hashable {
    case f32
    /// bfloat16 operands, float32 accumulation and output.
    case bf16
    /// int8 operands (signed), int32 sums and output.
    case int8
}

/// Matrix products through oneDNN (f32 and bf16) or OpenBLAS (f32).
///
/// `C[M,N] (+)= op(A) · op(B)`, all row-major with leading dimensions; `op(A)` is `A[M,K]`,
/// or `Aᵀ` when A is stored `[K,M]` (`aTransposed`, e.g. a weight gradient `dW = dyᵀ·x`);
/// `op(B)` is `B[K,N]`, or `Bᵀ` when B is stored `[N,K]` (an `nn.Linear` weight). C is always float32.
/// oneDNN primitives are created once per shape and kept (creating one costs far more than
/// running a small product).
public enum GEMM {
    /// Which library multiplies f32 matrices. `FINCH_GEMM=openblas` selects OpenBLAS; bf16 always uses oneDNN.
    public enum Backend: String, Sendable { case dnnl, openblas }

    /// The f32 backend in use (from the `FINCH_GEMM` environment variable, default oneDNN).
    public static let f32Backend: Backend = {
        if let v = getenvString("FINCH_GEMM"), let b = Backend(rawValue: v) { return b }
        return .dnnl
    }()

    /// f32 product. `aTransposed`: A is stored `[K,M]` with row stride `lda`;
    /// `bTransposed`: B is stored `[N,K]` with row stride `ldb`.
    public static func f32(m: Int, n: Int, k: Int,
                           a: UnsafePointer<Float>, lda: Int, aTransposed: Bool = false,
                           b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool,
                           c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, backend: Backend? = nil) {
        Profile.measure(.gemm, flops: 2 * Double(m) * Double(n) * Double(k)) {
            f32Product(m: m, n: n, k: k, a: a, lda: lda, aTransposed: aTransposed, b: b, ldb: ldb, bTransposed: bTransposed,
                       c: c, ldc: ldc, accumulate: accumulate, backend: backend)
        }
    }

    static func f32Product(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, aTransposed: Bool,
                           b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool,
                           c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, backend: Backend?) {
        if m == 0 || n == 0 { return }
        if k == 0 {   // an empty sum: C = 0 (or unchanged)
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        if (backend ?? f32Backend) == .dnnl {
            let failure = DNNL.shared.run(.init(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, aTransposed: aTransposed,
                                                bTransposed: bTransposed, type: .f32, accumulate: accumulate),
                                          a: UnsafeMutableRawPointer(mutating: a), b: UnsafeMutableRawPointer(mutating: b), c: c)
            guard let failure else { return }
            recordDNNLFailure(failure)   // then OpenBLAS computes the product (a primitive that failed to be created left C untouched)
        }
        _ = openBLASThreads
        cblas_sgemm(CblasRowMajor, aTransposed ? CblasTrans : CblasNoTrans, bTransposed ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb),
                    accumulate ? 1 : 0, c, Int32(ldc))
    }

    /// The first oneDNN failure of this process, if any. A failed oneDNN product never traps:
    /// the product is computed again by OpenBLAS (f32; bf16 widened to f32 and multiplied by
    /// OpenBLAS), a warning with the advice is printed once, and the failure is kept here.
    public static var dnnlFailure: CoreError? { dnnlFailureState.withLock { $0 } }

    private static let dnnlFailureState = Mutex<CoreError?>(nil)

    static func recordDNNLFailure(_ failure: CoreError) {
        let first = dnnlFailureState.withLock { state -> Bool in
            if state != nil { return false }
            state = failure
            return true
        }
        if first {
            let line = "finch: warning: \(failure.description); products fall back to OpenBLAS (slower). "
                + "Set FINCH_GEMM=openblas to choose it from the start.\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }

    /// Runs one small f32 and one bf16 product through oneDNN, creating their primitives, and
    /// throws the failure if either fails: a caller that wants oneDNN (a benchmark) learns at
    /// once, with the advice, instead of running on the fallback.
    /// - Throws: ``CoreError/dnnl(call:status:)`` naming the oneDNN call that failed.
    public static func checkDNNL() throws(CoreError) {
        var a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8], c = [Float](repeating: 0, count: 4)
        var ab = a.map(BFloat16.from), bb = b.map(BFloat16.from)
        for type in [GEMMType.f32, .bf16] {
            let key = DNNL.Key(m: 2, n: 2, k: 2, lda: 2, ldb: 2, ldc: 2, aTransposed: false, bTransposed: false,
                               type: type, accumulate: false)
            let failure: CoreError? = c.withUnsafeMutableBufferPointer { cp in
                type == .f32
                    ? DNNL.shared.run(key, a: &a, b: &b, c: cp.baseAddress!)
                    : DNNL.shared.run(key, a: &ab, b: &bb, c: cp.baseAddress!)
            }
            if let failure { throw failure }
        }
    }

    /// How bf16 products are computed.
    public enum BF16Compute: String, Sendable {
        /// oneDNN's bf16 kernels (AVX512-BF16 dot products, AMX tiles).
        case native
        /// The bf16 operands widened to f32 (exactly: a bf16 value is an f32 with a shorter
        /// mantissa) and multiplied by the f32 GEMM: the same products, summed in another order.
        /// On CPUs whose bf16 instructions are slower than their f32 FMAs (or absent) this keeps
        /// bf16 storage without bf16's slower arithmetic.
        case f32
    }

    /// The bf16 compute of this process: a `withBF16Compute` override (tests, a resumed run's
    /// recorded choice), else `FINCH_BF16_COMPUTE=native|f32`, else `BF16Compute.forThisCPU`.
    public static var bf16Compute: BF16Compute {
        bf16Override.withLock { $0 } ?? defaultBF16Compute
    }

    /// Sets the bf16 compute for the rest of the process (a resumed run takes the choice recorded
    /// in its checkpoint, so that its products are computed as before).
    public static func setBF16Compute(_ mode: BF16Compute?) { bf16Override.withLock { $0 = mode } }

    /// Runs `body` with bf16 products computed as `mode` (tests and benchmarks), then restores the choice.
    public static func withBF16Compute<T>(_ mode: BF16Compute, _ body: () throws -> T) rethrows -> T {
        let old = bf16Override.withLock { o in let was = o; o = mode; return was }
        defer { bf16Override.withLock { $0 = old } }
        return try body()
    }

    private static let bf16Override = Mutex<BF16Compute?>(nil)

    /// The path `FINCH_BF16_COMPUTE` names (native or f32), nil when it names none.
    public static let bf16ComputeFromEnvironment: BF16Compute? = getenvString("FINCH_BF16_COMPUTE").flatMap(BF16Compute.init)

    /// `FINCH_BF16_COMPUTE` when it names a path, else `forThisCPU`.
    public static let defaultBF16Compute: BF16Compute = bf16ComputeFromEnvironment ?? forThisCPU

    /// The choice for this CPU, from its features alone (never a timing, so that every run and its
    /// resume on one machine compute the same bits):
    ///
    /// | CPU (/proc/cpuinfo)                        | bf16 products | why |
    /// |--------------------------------------------|---------------|-----|
    /// | `amx_bf16` (Intel Sapphire Rapids and later, AMX visible) | native | AMX tiles: many times the f32 rate |
    /// | `AuthenticAMD` with `avx512_bf16` (Zen 4, Zen 5) | native | a bf16 dot product per FMA slot: ~2× f32 (Zen 5: oneDNN bf16 770-917 vs f32 280-370 GFLOP/s) |
    /// | other `avx512_bf16`, no AMX (Intel Cooper Lake; Sapphire Rapids with AMX hidden) | f32 | one bf16 dot product per cycle: below f32 (measured: oneDNN bf16 111-167 vs f32 208-300 GFLOP/s) |
    /// | no `avx512_bf16`                            | f32 | oneDNN would emulate bf16 |
    public static var forThisCPU: BF16Compute {
        bf16Compute(vendor: CPUInfo.vendor, features: CPUInfo.features)
    }

    /// The table of `forThisCPU` for a given vendor id and feature list (as /proc/cpuinfo names them).
    public static func bf16Compute(vendor: String, features: [String]) -> BF16Compute {
        if features.contains("amx_bf16") { return .native }
        if features.contains("avx512_bf16") && vendor == "AuthenticAMD" { return .native }
        return .f32
    }

    /// C[M, N] (+)= A[M, K] · op(B) in integers: int8 × int8 → int32 sums (oneDNN's int8 matmul,
    /// VNNI where the CPU has it); transposes as in `f32`. Exact (no rounding) while a sum fits
    /// 32 bits (K < 2¹⁷ for any int8 values).
    /// - Throws: ``CoreError/dnnl(call:status:)`` when oneDNN cannot run it (there is no fallback:
    ///   callers choose integer products only where oneDNN runs them).
    public static func int8(m: Int, n: Int, k: Int, a: UnsafePointer<Int8>, lda: Int, aTransposed: Bool = false,
                            b: UnsafePointer<Int8>, ldb: Int, bTransposed: Bool,
                            c: UnsafeMutablePointer<Int32>, ldc: Int, accumulate: Bool) throws(CoreError) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let failure = Profile.measure(.int8Gemm, flops: 2 * Double(m) * Double(n) * Double(k)) {
            DNNL.shared.run(.init(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, aTransposed: aTransposed,
                                  bTransposed: bTransposed, type: .int8, accumulate: accumulate),
                            a: UnsafeMutableRawPointer(mutating: a), b: UnsafeMutableRawPointer(mutating: b), c: UnsafeMutableRawPointer(c))
        }
        if let failure { throw failure }
    }

    /// bf16 × bf16 → f32 product (f32 accumulation), computed as `bf16Compute` says. Transposes as in `f32`.
    public static func bf16(m: Int, n: Int, k: Int,
                            a: UnsafePointer<BF16Bits>, lda: Int, aTransposed: Bool = false,
                            b: UnsafePointer<BF16Bits>, ldb: Int, bTransposed: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        Profile.measure(.gemm, flops: 2 * Double(m) * Double(n) * Double(k)) {
            bf16Product(m: m, n: n, k: k, a: a, lda: lda, aTransposed: aTransposed, b: b, ldb: ldb, bTransposed: bTransposed,
                        c: c, ldc: ldc, accumulate: accumulate)
        }
    }

    static func bf16Product(m: Int, n: Int, k: Int, a: UnsafePointer<BF16Bits>, lda: Int, aTransposed: Bool,
                            b: UnsafePointer<BF16Bits>, ldb: Int, bTransposed: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        if bf16Compute == .f32 {
            bf16AsF32(m: m, n: n, k: k, a: a, lda: lda, aTransposed: aTransposed, b: b, ldb: ldb, bTransposed: bTransposed,
                      c: c, ldc: ldc, accumulate: accumulate)
            return
        }
        let failure = DNNL.shared.run(.init(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, aTransposed: aTransposed,
                                            bTransposed: bTransposed, type: .bf16, accumulate: accumulate),
                                      a: UnsafeMutableRawPointer(mutating: a), b: UnsafeMutableRawPointer(mutating: b), c: c)
        guard let failure else { return }
        recordDNNLFailure(failure)
        bf16AsF32(m: m, n: n, k: k, a: a, lda: lda, aTransposed: aTransposed, b: b, ldb: ldb, bTransposed: bTransposed,
                  c: c, ldc: ldc, accumulate: accumulate, backend: .openblas)
    }

    /// Scratch for widened bf16 operands (slot 0: A, slot 1: B), reused between products (one product at a time).
    private static let widenScratch = Mutex<Scratch>(Scratch())

    /// Widens `rows` rows of `columns` bf16 values (row stride `stride`) into packed f32 rows, on all cores.
    static func widen(_ src: UnsafePointer<BF16Bits>, stride: Int, rows: Int, columns: Int, into dst: UnsafeMutablePointer<Float>) {
        Profile.measure(.bf16Convert) {
            Parallel.forEachRange(rows, costPerItem: columns, grain: 1 << 16) { r in
                for i in r { BFloat16.convert(src + i * stride, to: dst + i * columns, count: columns) }
            }
        }
    }

    /// The bf16 product as an f32 one: A widened whole, B in blocks of columns of ~16 MiB of f32.
    static func bf16AsF32(m: Int, n: Int, k: Int, a: UnsafePointer<BF16Bits>, lda: Int, aTransposed: Bool,
                          b: UnsafePointer<BF16Bits>, ldb: Int, bTransposed: Bool,
                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, backend: Backend = .dnnl) {
        widenScratch.withLock { scratch in
            let aRows = aTransposed ? k : m, aColumns = aTransposed ? m : k
            let af = scratch.floats(aRows * aColumns, slot: 0)
            widen(a, stride: lda, rows: aRows, columns: aColumns, into: af)
            let block = max(64, min(n, (4 << 20) / k))
            var n0 = 0
            while n0 < n {
                let nb = min(block, n - n0)
                let bf = scratch.floats(nb * k, slot: 1)
                if bTransposed {   // B stored [N, K]: rows n0 ..< n0 + nb
                    widen(b + n0 * ldb, stride: ldb, rows: nb, columns: k, into: bf)
                } else {           // B stored [K, N]: columns n0 ..< n0 + nb of every row
                    widen(b + n0, stride: ldb, rows: k, columns: nb, into: bf)
                }
                f32Product(m: m, n: nb, k: k, a: af, lda: aColumns, aTransposed: aTransposed, b: bf, ldb: bTransposed ? k : nb,
                           bTransposed: bTransposed, c: c + n0, ldc: ldc, accumulate: accumulate, backend: backend)
                n0 += nb
            }
        }
    }

    /// Single-threaded OpenBLAS product, for use inside a parallel loop (e.g. one attention head each):
    /// `C (+)= alpha · op(A) · op(B)`, transposes as in `f32`.
    public static func f32Serial(m: Int, n: Int, k: Int,
                                 a: UnsafePointer<Float>, lda: Int, aTransposed: Bool = false,
                                 b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool,
                                 c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float = 1, accumulate: Bool) {
        _ = openBLASSingleThreaded
        cblas_sgemm(CblasRowMajor, aTransposed ? CblasTrans : CblasNoTrans, bTransposed ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    accumulate ? 1 : 0, c, Int32(ldc))
    }

    /// The OpenBLAS kernels in use, and those OpenBLAS chose by itself when it loaded: Debian's
    /// build falls back to generic (Prescott) kernels on CPUs it does not recognise, and Finch
    /// then selects the AVX-512 (SkylakeX) or AVX2 (Haswell) ones this CPU runs
    /// (`finch_openblas_select_core`); `OPENBLAS_CORETYPE`, when set, is left as it is.
    public static var openBLASCore: (inUse: String, atLoad: String) {
        (String(cString: finch_openblas_select_core()), String(cString: finch_openblas_core_at_load()))
    }

    /// With the oneDNN backend OpenBLAS is only called from inside Finch's own parallel loops
    /// (one attention head each), so it must not start threads of its own.
    private static let openBLASSingleThreaded: Void = {
        _ = finch_openblas_select_core()
        if f32Backend != .openblas { openblas_set_num_threads(1) }
    }()

    /// Runs `body` with OpenBLAS using `threads` threads (for benchmarks comparing backends
    /// fairly), then restores the setting Finch runs with.
    public static func withOpenBLASThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
        _ = openBLASSingleThreaded; _ = openBLASThreads
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(f32Backend == .openblas ? Int32(Parallel.threadCount) : 1) }
        return try body()
    }

    /// When OpenBLAS multiplies whole matrices it uses every core.
    private static let openBLASThreads: Void = {
        _ = finch_openblas_select_core()
        if f32Backend == .openblas { openblas_set_num_threads(Int32(Parallel.threadCount)) }
    }()
}

func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}

/// Cached oneDNN matmul primitives, one per problem shape.
final class DNNL: @unchecked Sendable {
    static let shared = DNNL()

    struct Key: Hashable {
        var m, n, k, lda, ldb, ldc: Int
        var aTransposed: Bool
        var bTransposed: Bool
        var type: GEMMType
        var accumulate: Bool
    }

    final class Entry {
        var primitive: dnnl_primitive_t?
        var a: dnnl_memory_t?, b: dnnl_memory_t?, c: dnnl_memory_t?
        deinit {
            dnnl_primitive_destroy(primitive)
            dnnl_memory_destroy(a); dnnl_memory_destroy(b); dnnl_memory_destroy(c)
        }
    }

    private var engine: dnnl_engine_t?
    private var stream: dnnl_stream_t?
    /// Why the engine or stream could not be created (then every product reports it).
    private var setupFailure: CoreError?
    private let cache = Mutex<[Key: Entry]>([:])
    /// oneDNN streams are not thread-safe: products run one at a time (each is itself parallel).
    private let running = Mutex<Void>(())

    private init() {
        do {
            try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
            try check(dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue)), "dnnl_stream_create")
        } catch {
            setupFailure = error
        }
    }

    private func check(_ status: dnnl_status_t, _ call: String) throws(CoreError) {
        if status != dnnl_success { throw .dnnl(call: call, status: Int32(status.rawValue)) }
    }

    /// Runs the product of `key`; nil on success, else the failure (C may be partly written only
    /// when execution itself failed; creation failures leave it untouched).
    func run(_ key: Key, a: UnsafeMutableRawPointer, b: UnsafeMutableRawPointer, c: UnsafeMutableRawPointer) -> CoreError? {
        if let setupFailure { return setupFailure }
        do {
            try running.withLock { _ throws(CoreError) in
                let e = try entry(for: key)
                try check(dnnl_memory_set_data_handle(e.a, a), "dnnl_memory_set_data_handle")
                try check(dnnl_memory_set_data_handle(e.b, b), "dnnl_memory_set_data_handle")
                try check(dnnl_memory_set_data_handle(e.c, c), "dnnl_memory_set_data_handle")
                var args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: e.a),
                            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: e.b),
                            dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: e.c)]
                try check(dnnl_primitive_execute(e.primitive, stream, 3, &args), "dnnl_primitive_execute")
                try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
            }
            return nil
        } catch {
            return error
        }
    }

    private func entry(for key: Key) throws(CoreError) -> Entry {
        try cache.withLock { cache throws(CoreError) in
            if let e = cache[key] { return e }
            if cache.count > 256 { cache.removeAll() }
            let e = try make(key)
            cache[key] = e
            return e
        }
    }

    private func desc(_ rows: Int, _ cols: Int, _ rowStride: Int, _ colStride: Int,
                      _ type: dnnl_data_type_t) throws(CoreError) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        var dims: dnnl_dims_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var strides: dnnl_dims_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        dims.0 = Int64(rows); dims.1 = Int64(cols)
        strides.0 = Int64(rowStride); strides.1 = Int64(colStride)
        let status = withUnsafePointer(to: &dims) { d in
            withUnsafePointer(to: &strides) { s in
                d.withMemoryRebound(to: Int64.self, capacity: 12) { dp in
                    s.withMemoryRebound(to: Int64.self, capacity: 12) { sp in
                        dnnl_memory_desc_init_by_strides(&md, 2, dp, type, sp)
                    }
                }
            }
        }
        try check(status, "dnnl_memory_desc_init_by_strides")
        return md
    }

    private func make(_ key: Key) throws(CoreError) -> Entry {
        let t: dnnl_data_type_t = switch key.type { case .f32: dnnl_f32; case .bf16: dnnl_bf16; case .int8: dnnl_s8 }
        // op(A) is [M,K]: stored [K,M] (transposed) → strides (1, lda); stored [M,K] → (lda, 1).
        var aMD = try key.aTransposed ? desc(key.m, key.k, 1, key.lda, t) : desc(key.m, key.k, key.lda, 1, t)
        // op(B) is [K,N]: stored [N,K] (transposed) → strides (1, ldb); stored [K,N] → (ldb, 1).
        var bMD = try key.bTransposed ? desc(key.k, key.n, 1, key.ldb, t) : desc(key.k, key.n, key.ldb, 1, t)
        var cMD = try desc(key.m, key.n, key.ldc, 1, key.type == .int8 ? dnnl_s32 : dnnl_f32)
        var op = dnnl_matmul_desc_t()
        try check(dnnl_matmul_desc_init(&op, &aMD, &bMD, nil, &cMD), "dnnl_matmul_desc_init")
        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        if key.accumulate {
            var ops: dnnl_post_ops_t?
            try check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
            try check(dnnl_post_ops_append_sum(ops, 1.0), "dnnl_post_ops_append_sum")
            try check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
            dnnl_post_ops_destroy(ops)
        }
        var pd: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&pd, &op, attr, engine, nil), "dnnl_primitive_desc_create")
        defer { dnnl_primitive_desc_destroy(pd) }
        let e = Entry()
        try check(dnnl_primitive_create(&e.primitive, pd), "dnnl_primitive_create")
        try check(dnnl_memory_create(&e.a, &aMD, engine, nil), "dnnl_memory_create")
        try check(dnnl_memory_create(&e.b, &bMD, engine, nil), "dnnl_memory_create")
        try check(dnnl_memory_create(&e.c, &cMD, engine, nil), "dnnl_memory_create")
        return e
    }
}
