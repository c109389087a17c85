import CFinchKernels

// Dimension letters: N rows (tokens), C channels.

/// LayerNorm as in GPT-2: `out = (x − mean(x)) / √(var(x) + eps) · weight + bias`, statistics in f32
/// (variance with 1/C, as PyTorch).
public enum LayerNorm {
    /// out [N, C] = layernorm(x [N, C]) · weight [C] + bias [C]. `stats` [N, 2] (optional) receives
    /// each row's mean and 1/√(var + eps) for backward. out may be x.
    public static func forward(out: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>?,
                               x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               rows: Int, channels c: Int, eps: Float) {
        Parallel.forEachRange(rows, costPerItem: c * 5) { range in
            for r in range {
                let xr = x + r * c, o = out + r * c
                var sum: Float = 0
                for i in 0..<c { sum += xr[i] }
                let mean = sum / Float(c)
                var ss: Float = 0
                for i in 0..<c { let d = xr[i] - mean; ss += d * d }
                let s = 1 / (ss / Float(c) + eps).squareRoot()
                if let stats { stats[2 * r] = mean; stats[2 * r + 1] = s }
                for i in 0..<c { o[i] = (xr[i] - mean) * s * weight[i] + bias[i] }
            }
        }
    }

    /// Backward of `forward`, accumulating: dx [N, C] += ∂out/∂x · dout, and (when given)
    /// dweight [C] += Σ_rows dout · x̂, dbias [C] += Σ_rows dout, with x̂ = (x − mean) · s.
    /// With g = weight · dout: `dx = s · (g − mean(g) − x̂ · mean(g · x̂))`.
    /// `dout` [N, C], `x` [N, C] (the forward's input), `weight` [C], `stats` [N, 2] (saved by forward).
    /// dx must not alias dout or x.
    public static func backward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                                dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, weight: UnsafePointer<Float>, stats: UnsafePointer<Float>,
                                rows: Int, channels c: Int) {
        if rows == 0 || c == 0 { return }
        if dweight != nil || dbias != nil {
            // Parameter gradients (trainable norms only), serially: a plain sum over rows.
            for r in 0..<rows {
                let xr = x + r * c, dr = dout + r * c
                let mean = stats[2 * r], s = stats[2 * r + 1]
                for i in 0..<c {
                    dweight?[i] += dr[i] * (xr[i] - mean) * s
                    dbias?[i] += dr[i]
                }
            }
        }
        Parallel.forEachRange(rows, costPerItem: c * 8) { range in
            for r in range {
                let xr = x + r * c, dr = dout + r * c, dxr = dx + r * c
                let mean = stats[2 * r], s = stats[2 * r + 1]
                var gMean: Float = 0, gxMean: Float = 0
                for i in 0..<c {
                    let g = weight[i] * dr[i]
                    gMean += g
                    gxMean += g * (xr[i] - mean) * s
                }
                gMean /= Float(c); gxMean /= Float(c)
                for i in 0..<c {
                    let xh = (xr[i] - mean) * s
                    dxr[i] += s * (weight[i] * dr[i] - gMean - xh * gxMean)
                }
            }
        }
    }
}
