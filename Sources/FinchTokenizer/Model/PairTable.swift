/// An open-addressing hash map from a pair of token ids to (merge rank, merged id).
/// Far cheaper per lookup than `Dictionary` on the BPE hot path.
struct PairTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private let shift: UInt64
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        var bits: UInt64 = 4
        while size < capacity * 2 { size <<= 1; bits += 1 }
        keys = [UInt64](repeating: PairTable.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
        shift = 64 - bits
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { (UInt64(UInt32(bitPattern: a)) << 32) | UInt64(UInt32(bitPattern: b)) }

    /// Inserts or replaces: a later duplicate merge overrides an earlier one, as HF's
    /// `collect()` into a `HashMap` does.
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int32, newId: Int32) {
        let k = PairTable.key(a, b)
        var i = slot(k)
        while keys[i] != PairTable.empty && keys[i] != k {
            i = (i + 1) & mask
        }
        keys[i] = k
        values[i] = (UInt64(UInt32(bitPattern: rank)) << 32) | UInt64(UInt32(bitPattern: newId))
    }

    /// (rank, merged id) of the pair, or nil.
    @inline(__always)
    func get(_ a: Int32, _ b: Int32) -> (rank: Int32, newId: Int32)? {
        let k = PairTable.key(a, b)
        return keys.withUnsafeBufferPointer { kp in
            var i = slot(k)
            while true {
                let stored = kp[i]
                if stored == k {
                    let v = values[i]
                    return (Int32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v))
                }
                if stored == PairTable.empty { return nil }
                i = (i + 1) & mask
            }
        }
    }
}
