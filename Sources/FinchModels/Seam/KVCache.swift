import FinchCore

// Dimension letters: L layers, G key/value heads, S capacity (positions), D head dim.

/// Keys and values of one sequence for every layer, grown as the sequence grows.
public final class KVCache: SequenceState, @unchecked Sendable {
    /// Tokens stored so far (the position of the next token).
    public private(set) var length = 0
    /// S: positions the buffers hold before they must grow.
    public private(set) var capacity: Int
    let layers: Int, kvHeads: Int, headDim: Int
    /// Per layer [G, S, D].
    private(set) var keys: [Buffer<Float>]
    /// Per layer [G, S, D].
    private(set) var values: [Buffer<Float>]

    init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim
        self.capacity = max(capacity, 16)
        keys = (0..<layers).map { _ in Buffer(uninitializedCount: kvHeads * max(capacity, 16) * headDim) }   // positions past `length` are never read
        values = (0..<layers).map { _ in Buffer(uninitializedCount: kvHeads * max(capacity, 16) * headDim) }
    }

    /// Bytes held by the cache.
    public var byteCount: Int { 2 * layers * kvHeads * capacity * headDim * 4 }

    public var isRecyclable: Bool { true }

    /// Forgets every stored token (keeps the memory).
    public func reset() { length = 0 }

    /// Drops tokens after the first `newLength` (e.g. to reuse a shared prompt prefix).
    public func truncate(to newLength: Int) { length = min(length, max(0, newLength)) }

    /// Makes room for `total` positions, copying what is stored.
    func reserve(_ total: Int) {
        if total <= capacity { return }
        var newCap = capacity
        while newCap < total { newCap *= 2 }
        let d = headDim, old = capacity
        func grow(_ b: Buffer<Float>) -> Buffer<Float> {
            let n = Buffer<Float>(uninitializedCount: kvHeads * newCap * d)
            for g in 0..<kvHeads {
                (n.pointer + g * newCap * d).update(from: b.pointer + g * old * d, count: length * d)
            }
            return n
        }
        keys = keys.map(grow)
        values = values.map(grow)
        capacity = newCap
    }

    /// Copies `rows` new keys/values [rows, G, D] of `layer` into positions length ..< length + rows.
    func store(layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows: Int) {
        let d = headDim, g = kvHeads
        let kb = keys[layer].pointer, vb = values[layer].pointer
        for r in 0..<rows {
            for h in 0..<g {
                let dst = (h * capacity + length + r) * d
                (kb + dst).update(from: k + (r * g + h) * d, count: d)
                (vb + dst).update(from: v + (r * g + h) * d, count: d)
            }
        }
    }

    func advance(by n: Int) { length += n }
}
