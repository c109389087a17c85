import CFinchKernels

// Dimension letters: N rows, F intermediate features.

/// The gated activation of LLaMA's MLP: `h = silu(gate) * up`.
public enum SwiGLU {
    /// h [N·F] = silu(gate [N·F]) * up [N·F].
    public static func forward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                               up: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 4) { range in
            finch_silu_mul(h + range.lowerBound, gate + range.lowerBound, up + range.lowerBound, range.count)
        }
    }

    /// Backward of `forward`, accumulating (sigmoid recomputed from gate):
    /// dgate [N·F] += dh · up · silu'(gate), dup [N·F] += dh · silu(gate),
    /// with silu'(g) = σ(g) · (1 + g · (1 − σ(g))). `dh` [N·F], `gate` [N·F], `up` [N·F].
    public static func backward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
                                dh: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                                up: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 8) { range in
            let o = range.lowerBound
            finch_silu_mul_backward(dgate + o, dup + o, dh + o, gate + o, up + o, range.count)
        }
    }
}
