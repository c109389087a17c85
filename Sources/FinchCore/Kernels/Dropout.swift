// Dimension letters: N elements.

/// Inverted dropout with a counter-based mask: element i of a call keyed `key` is dropped when
/// a hash of (key, i) falls below p, and kept ones are scaled by 1 / (1 − p). The mask is a pure
/// function of (key, i), so backward (and a recomputed forward under gradient checkpointing)
/// regenerates it instead of storing it.
public enum Dropout {

    /// Whether element i of the call keyed `key` is kept (probability 1 − p).
    @inline(__always)
    public static func keeps(_ i: Int, key: UInt64, p: Float) -> Bool {
        let u = Float(SplitMix64.mix(key &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15) >> 40) * (1 / Float(1 << 24))   // [0, 1)
        return u >= p
    }

    /// out [N] = x [N] · mask / (1 − p) (out may alias x). Also the backward: the gradient of the
    /// input is this same map applied to the gradient of the output.
    public static func apply(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int,
                             p: Float, key: UInt64) {
        let scale = 1 / (1 - p)
        Parallel.forEachRange(n, costPerItem: 8) { range in
            for i in range { out[i] = keeps(i, key: key, p: p) ? x[i] * scale : 0 }
        }
    }

    /// out [N] += x [N] · mask / (1 − p): the backward, accumulating.
    public static func applyAdding(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int,
                                   p: Float, key: UInt64) {
        let scale = 1 / (1 - p)
        Parallel.forEachRange(n, costPerItem: 8) { range in
            for i in range where keeps(i, key: key, p: p) { out[i] += x[i] * scale }
        }
    }
}
