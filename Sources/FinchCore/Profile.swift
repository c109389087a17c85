import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a step's time goes, for `finch bench train`: the kernels' entry points time themselves
/// into a few regions (exclusive time: a region inside another is taken out of the outer one) and
/// the matrix products count their flops, so a benchmark can report the share of a step spent in
/// products and how close those run to the CPU's measured peak. Off unless a benchmark turns it
/// on (then one relaxed atomic load per call); regions are timed on the thread that calls the
/// kernel, so only top-level calls are timed (not those made inside a parallel loop).
public enum Profile {
    public enum Region: Int, CaseIterable, Sendable {
        /// Whole-matrix products (oneDNN / OpenBLAS), widening of bf16 operands excluded.
        case gemm
        /// Integer products (int8 × int8 → int32).
        case int8Gemm
        /// Quantizing activations to int8 for an integer product, and scaling its sums back.
        case int8Convert
        /// Expanding a quantized weight for a product.
        case dequantize
        /// bf16 conversions and rounding of operands.
        case bf16Convert
        /// Attention (scores, softmax, weighted sums; forward and backward).
        case attention

        public var name: String {
            switch self {
            case .gemm: "gemm"
            case .int8Gemm: "int8_gemm"
            case .int8Convert: "int8_convert"
            case .dequantize: "dequantize"
            case .bf16Convert: "bf16_convert"
            case .attention: "attention"
            }
        }
    }

    /// Totals since `start()`.
    public struct Totals: Sendable {
        public var seconds = [Double](repeating: 0, count: Region.allCases.count)
        /// Multiply-adds × 2 of the products.
        public var gemmFlops = 0.0
        public var gemmCalls = 0
        /// Multiply-adds × 2 of the integer products.
        public var int8Ops = 0.0

        public subscript(_ r: Region) -> Double { seconds[r.rawValue] }

        /// The difference `self − earlier` (for one step).
        public func since(_ earlier: Totals) -> Totals {
            var t = Totals()
            t.seconds = zip(seconds, earlier.seconds).map { $0 - $1 }
            t.gemmFlops = gemmFlops - earlier.gemmFlops
            t.gemmCalls = gemmCalls - earlier.gemmCalls
            t.int8Ops = int8Ops - earlier.int8Ops
            return t
        }
    }

    private struct State {
        var totals = Totals()
        /// Open regions on the timing thread: (start, time of the regions inside it).
        var stack: [(region: Region, start: UInt64, inner: UInt64)] = []
        var thread: pthread_t?
    }

    private static let enabled = Atomic<Bool>(false)
    private static let state = Mutex(State())

    /// Resets the totals and starts timing the calls made on this thread.
    public static func start() {
        state.withLock { $0 = State(); $0.thread = pthread_self() }
        enabled.store(true, ordering: .relaxed)
    }

    /// Stops timing.
    public static func stop() { enabled.store(false, ordering: .relaxed) }

    /// The totals so far.
    public static var totals: Totals { state.withLock { $0.totals } }

    @inline(__always) static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Runs `body`, timing it into `region` when profiling is on and this is the timing thread.
    @inline(__always)
    public static func measure<T>(_ region: Region, flops: Double = 0, _ body: () throws -> T) rethrows -> T {
        guard enabled.load(ordering: .relaxed) else { return try body() }
        let mine = state.withLock { s -> Bool in
            guard let t = s.thread, pthread_equal(t, pthread_self()) != 0 else { return false }
            s.stack.append((region, now(), 0))
            return true
        }
        guard mine else { return try body() }
        defer {
            let end = now()
            state.withLock { s in
                guard let open = s.stack.popLast() else { return }
                let total = end &- open.start
                s.totals.seconds[open.region.rawValue] += Double(total &- min(open.inner, total)) * 1e-9
                if open.region == .gemm { s.totals.gemmFlops += flops; s.totals.gemmCalls += 1 }
                if open.region == .int8Gemm { s.totals.int8Ops += flops }
                if !s.stack.isEmpty { s.stack[s.stack.count - 1].inner &+= total }
            }
        }
        return try body()
    }
}
