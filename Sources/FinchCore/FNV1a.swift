/// The 64-bit FNV-1a hash: a stable fingerprint (the same on every run and machine, unlike
/// `Hasher`), for values that are written to disk or mixed into seeds.
///
/// Each `combine` folds one word: `h = (h ^ word) * prime`. Bytes are folded one at a time (the
/// textbook FNV-1a of a byte string); other callers fold whole words, which keeps their recorded
/// values (checkpoint data fingerprints) unchanged.
public struct FNV1a: Sendable {
    public static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of what was combined so far.
    public private(set) var value: UInt64 = FNV1a.offsetBasis

    public init() {}

    /// Folds one word into the hash.
    public mutating func combine(_ word: UInt64) { value = (value ^ word) &* Self.prime }

    /// Folds an `Int32` as its 32-bit pattern (one word).
    public mutating func combine(_ v: Int32) { combine(UInt64(UInt32(bitPattern: v))) }

    /// The FNV-1a hash of a string's UTF-8 bytes.
    public static func hash(_ string: String) -> UInt64 {
        var h = FNV1a()
        for byte in string.utf8 { h.combine(UInt64(byte)) }
        return h.value
    }
}
