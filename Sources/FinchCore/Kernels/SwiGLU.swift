import Foundation

// Dimension letters: N rows, F intermediate features.

/// The gated activation of LLaMA's MLP: `h = silu(gate) * up`.
public enum SwiGLU {
    /// h [N·F] = silu(gate [N·F]) * up [N·F].
    public static func forward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                               up: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, costPerItem: 20) { range in
            for i in range {
                let g = gate[i]
                h[i] = g / (1 + exp(-g)) * up[i]
            }
        }
    }
}
