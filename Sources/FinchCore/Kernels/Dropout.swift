import CFinchKernels

// Dimension letters: N elements.

/// Inverted dropout with a counter-based mask: element i of a call keyed `key` is dropped when
/// a hash of (key, i) falls below p, and kept ones are scaled by 1 / (1 − p). The mask is a pure
/// function of (key, i), so backward (and a recomputed forward under gradient checkpointing)
/// regenerates it instead of storing it. (The mask is not PyTorch's: no two libraries share
/// dropout random streams.)
public enum Dropout {
    /// out [N] = x [N] · mask / (1 − p) (out may alias x). Also the backward: the gradient of the
    /// input is this same map applied to the gradient of the output.
    public static func apply(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int,
                             p: Float, key: UInt64) {
        Parallel.forEachRange(n, costPerItem: 4) { r in
            finch_dropout(out + r.lowerBound, x + r.lowerBound, r.count, r.lowerBound, p, key, 0)
        }
    }

    /// out [N] += x [N] · mask / (1 − p): the backward, accumulating.
    public static func applyAdding(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int,
                                   p: Float, key: UInt64) {
        Parallel.forEachRange(n, costPerItem: 4) { r in
            finch_dropout(out + r.lowerBound, x + r.lowerBound, r.count, r.lowerBound, p, key, 1)
        }
    }
}
