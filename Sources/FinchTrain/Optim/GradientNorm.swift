import FinchCore

/// Global gradient norm and clipping as PyTorch's `clip_grad_norm_` (L2 over all tensors).
public enum GradientNorm {
    /// ‖g‖₂ over all the buffers (sums in f64), on `backend`.
    public static func total(_ grads: [Buffer<Float>], backend: any ComputeBackend = CPUBackend.shared) -> Double {
        grads.reduce(0) { $0 + backend.sumOfSquares($1.pointer, count: $1.count) }.squareRoot()
    }

    /// Scales every gradient by min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping.
    @discardableResult
    public static func clip(_ grads: [Buffer<Float>], maxNorm: Double, backend: any ComputeBackend = CPUBackend.shared) -> Double {
        let norm = total(grads, backend: backend)
        let coef = Float(min(1, maxNorm / (norm + 1e-6)))
        if coef < 1 { for g in grads { backend.scale(g.pointer, count: g.count, by: coef) } }
        return norm
    }
}
