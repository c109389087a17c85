import CFinchKernels

// Dimension letters: N rows, F intermediate features.

/// GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`, transformers'
/// `gelu_pytorch_tanh` / `gelu_new`): `gelu(x) = x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`;
/// or exact (`erf`: transformers' `gelu`): `x · Φ(x)`.
public enum GELU {
    /// Which GELU.
    public enum Approximation: Sendable, Equatable { case tanh, erf }

    /// y [N·F] = gelu(x [N·F]). y may be x.
    public static func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int,
                               approximation: Approximation = .tanh) {
        Parallel.forEachRange(count, costPerItem: 8) { r in
            switch approximation {
            case .tanh: finch_gelu_tanh(y + r.lowerBound, x + r.lowerBound, r.count)
            case .erf: finch_gelu_erf(y + r.lowerBound, x + r.lowerBound, r.count)
            }
        }
    }

    /// Backward of `forward`, accumulating: dx [N·F] += dy · gelu'(x), with
    /// gelu'(x) = ½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(√(2/π)(x + 0.044715x³)).
    /// Exact: dx += dy · (Φ(x) + x·φ(x)).
    public static func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                count: Int, approximation: Approximation = .tanh) {
        Parallel.forEachRange(count, costPerItem: 12) { r in
            let o = r.lowerBound
            switch approximation {
            case .tanh: finch_gelu_tanh_backward(dx + o, dy + o, x + o, r.count)
            case .erf: finch_gelu_erf_backward(dx + o, dy + o, x + o, r.count)
            }
        }
    }
}

/// The gated activation of Gemma's MLP: `h = gelu(gate) · up` (tanh approximation).
public enum GeGLU {
    /// h [N·F] = gelu(gate [N·F]) · up [N·F].
    public static func forward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                               up: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 8) { r in
            let o = r.lowerBound
            finch_gelu_tanh_mul(h + o, gate + o, up + o, r.count)
        }
    }

    /// Backward of `forward`, accumulating: dgate += dh · up · gelu'(gate), dup += dh · gelu(gate).
    public static func backward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
                                dh: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                                up: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 14) { r in
            let o = r.lowerBound
            finch_gelu_tanh_mul_backward(dgate + o, dup + o, dh + o, gate + o, up + o, r.count)
        }
    }
}
