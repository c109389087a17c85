import CFinchKernels

// Dimension letters: N rows, C channels.

/// The residual stream's addition: `y += x`. Its backward passes the gradient through to both
/// operands unchanged, so there is nothing to compute.
public enum Residual {
    /// y [N·C] += x [N·C].
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 1) { r in
            finch_axpy_f32(y + r.lowerBound, 1, x + r.lowerBound, r.count)
        }
    }
}
