// Dimension letters: N rows (tokens), C channels.

/// RMSNorm as in LLaMA: `out = x / sqrt(mean(x²) + eps) * weight`, statistics in f32.
public enum RMSNorm {
    /// out [N, C] = rmsnorm(x [N, C]) * weight [C]. `rstd` [N] (optional) receives 1/sqrt(mean(x²)+eps) for backward.
    public static func forward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
                               x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               rows: Int, channels c: Int, eps: Float) {
        Parallel.forEachRange(rows, costPerItem: c * 3) { range in
            for r in range {
                let xr = x + r * c, o = out + r * c
                var ss: Float = 0
                for i in 0..<c { ss += xr[i] * xr[i] }
                let s = 1 / (ss / Float(c) + eps).squareRoot()
                rstd?[r] = s
                for i in 0..<c { o[i] = weight[i] * (xr[i] * s) }
            }
        }
    }
}
