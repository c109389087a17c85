import CFinchKernels

/// Work spread over the OpenMP team that oneDNN uses, so GEMMs and Finch's own kernels
/// share the same threads instead of two pools spinning against each other.
public enum Parallel {
    /// Number of threads a parallel loop uses (OMP_NUM_THREADS, else one per core).
    public static var threadCount: Int { Int(finch_max_threads()) }

    /// Calls `body(range)` on each thread with a contiguous share of `0..<count`.
    /// Small loops (`count * costPerItem` below `grain`) run on the calling thread.
    public static func forEachRange(_ count: Int, costPerItem: Int = 1_000, grain: Int = 50_000,
                                    _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        if count == 1 || count * costPerItem < grain {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { escaping in
            let box = Box(count: count, body: escaping)
            let ctx = Unmanaged.passUnretained(box).toOpaque()
            finch_parallel_run({ ctx, tid, nt in
                let box = Unmanaged<Box>.fromOpaque(ctx!).takeUnretainedValue()
                let n = box.count, t = Int(tid), k = Int(nt)
                let lo = n * t / k, hi = n * (t + 1) / k
                if lo < hi { box.body(lo..<hi) }
            }, ctx)
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads.
    public static func forEach(_ count: Int, costPerItem: Int = 1_000, _ body: (Int) -> Void) {
        forEachRange(count, costPerItem: costPerItem) { range in
            for i in range { body(i) }
        }
    }

    private final class Box {
        let count: Int
        let body: (Range<Int>) -> Void
        init(count: Int, body: @escaping (Range<Int>) -> Void) { self.count = count; self.body = body }
    }
}
