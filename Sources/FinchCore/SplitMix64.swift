/// SplitMix64 (Steele, Lea & Flood 2014; the generator Java's `SplittableRandom` and the
/// xoshiro authors use for seeding): a tiny, fast 64-bit PRNG whose output is a pure function
/// of its seed on every platform and Swift version, which the standard library's generators
/// do not promise. Finch uses it for data order, so a run's batches can be replayed.
///
/// Each step adds the golden-ratio increment 0x9E3779B97F4A7C15 to the state and returns
/// ``mix(_:)`` of it.
public struct SplitMix64: Sendable, Equatable, Codable {
    /// The generator's whole state.
    public var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) { state = seed }

    /// A generator for one numbered stream of `seed` (e.g. one epoch), independent of the
    /// others: seeded with `mix(seed ^ mix(stream &+ 0x9E3779B97F4A7C15))`.
    public init(seed: UInt64, stream: UInt64) {
        state = Self.mix(seed ^ Self.mix(stream &+ 0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// A uniform integer in `0..<bound` (`bound > 0`), without modulo bias (Lemire 2019:
    /// multiply, and reject the few low products that would bias the result).
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0, "SplitMix64.next(below:) needs a positive bound")
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return m.high
    }

    /// SplitMix64's finalizer: a bijective mix of 64 bits (Stafford's variant 13).
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `0..<n` in a uniformly random order (Fisher–Yates, drawing from the end).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        var i = n - 1
        while i > 0 {
            let j = Int(next(below: UInt64(i + 1)))
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }
}
