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
}
