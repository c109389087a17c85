import Dispatch

/// Runs `body` over `0..<count` split into contiguous chunks on all cores
/// (`DispatchQueue.concurrentPerform`); small jobs (`count < serialBelow`) run inline.
func parallelChunks(_ count: Int, serialBelow: Int, _ body: (Range<Int>) -> Void) {
    if count <= 0 { return }
    let cores = max(1, ProcessInfoCores.count)
    if count < serialBelow || cores == 1 {
        body(0..<count)
        return
    }
    let chunks = min(count, cores * 4)
    withoutActuallyEscaping(body) { escapable in
        let work = UncheckedSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { work.value(lo..<hi) }
        }
    }
}

/// Carries a value into a `@Sendable` closure; the caller guarantees the parallel bodies only
/// touch disjoint memory.
struct UncheckedSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Number of active processors, read once.
enum ProcessInfoCores {
    static let count: Int = {
        #if canImport(Glibc) || canImport(Darwin) || canImport(Musl)
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? Int(n) : 1
        #else
        return 1
        #endif
    }()
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
