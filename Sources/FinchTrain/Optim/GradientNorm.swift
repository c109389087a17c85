import FinchCore

/// Global gradient norm and clipping as PyTorch's `clip_grad_norm_` (L2 over all tensors).
public enum GradientNorm {
    /// ‖g‖₂ over all the buffers (sums in f64).
    public static func total(_ grads: [Buffer<Float>]) -> Double {
        var ss = 0.0
        for g in grads { for i in 0..<g.count { ss += Double(g[i]) * Double(g[i]) } }
        return ss.squareRoot()
    }

    /// Scales every gradient by min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping.
    @discardableResult
    public static func clip(_ grads: [Buffer<Float>], maxNorm: Double) -> Double {
        let norm = total(grads)
        let coef = Float(min(1, maxNorm / (norm + 1e-6)))
        if coef < 1 { for g in grads { for i in 0..<g.count { g[i] *= coef } } }
        return norm
    }
}
