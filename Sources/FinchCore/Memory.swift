import CFinchKernels
import Foundation

/// What the process uses.
public enum Memory {
    /// Peak resident set size of this process so far, in MiB (getrusage's ru_maxrss).
    public static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Current resident set size of this process in bytes (`/proc/self/statm`), or nil where
    /// that file does not exist. With `releasingFreeMemory`, memory malloc holds free is first
    /// given back to the OS (`malloc_trim`), so what remains is memory in use.
    public static func currentRSSBytes(releasingFreeMemory: Bool = false) -> Int? {
        if releasingFreeMemory { finch_release_free_memory() }
        guard let h = FileHandle(forReadingAtPath: "/proc/self/statm") else { return nil }
        defer { try? h.close() }
        let fields = String(decoding: h.readDataToEndOfFile(), as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Serves allocations of `threshold` bytes or more from their own mappings (glibc's
    /// `M_MMAP_THRESHOLD`, fixed, which also turns off the dynamic threshold that otherwise rises
    /// after large frees): a freed buffer leaves the process at once, so the resident peak is what
    /// is live. Does nothing off glibc.
    public static func mapLargeAllocations(threshold: Int) {
        finch_map_large_allocations(threshold)
    }
}
