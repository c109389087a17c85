import Foundation

/// What the process uses.
public enum Memory {
    /// Peak resident set size of this process so far, in MiB (getrusage's ru_maxrss).
    public static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}
