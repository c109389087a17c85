import CFinchKernels

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

extension RMSNorm {
    /// Backward of `forward`, accumulating: dx [N, C] += ∂out/∂x · dout, and (when given)
    /// dweight [C] += Σ_rows dout · x · rstd. Pass `dweight: nil` for a frozen norm.
    ///
    /// With s = rstd[r] and g = weight · dout:
    /// `dx = s · g − x · s³ · (g · x) / C`.
    /// `dout` [N, C], `x` [N, C] (the forward's input), `weight` [C], `rstd` [N] (saved by forward).
    /// dx must not alias dout or x.
    public static func backward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                                dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                rows: Int, channels c: Int) {
        if rows == 0 || c == 0 { return }
        // Row chunks, each with its own partial dweight [C] (summed after, so no thread races).
        let chunks = max(1, min(rows, Parallel.threadCount))
        let partial = dweight == nil ? nil : Buffer<Float>(count: chunks * c)
        let perChunk = (rows + chunks - 1) / chunks
        Parallel.forEachRange(chunks, costPerItem: perChunk * c * 6) { range in
            let g = UnsafeMutablePointer<Float>.allocate(capacity: c)   // [C] weight · dout of one row
            defer { g.deallocate() }
            for chunk in range {
                let dw = partial.map { $0.pointer + chunk * c }
                for r in (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks) {
                    let xr = x + r * c, dr = dout + r * c, dxr = dx + r * c
                    let s = rstd[r]
                    for i in 0..<c { g[i] = weight[i] * dr[i] }
                    let k = s * s * s * finch_dot_f32(g, xr, c) / Float(c)
                    for i in 0..<c { dxr[i] += s * g[i] - k * xr[i] }
                    if let dw { for i in 0..<c { dw[i] += dr[i] * xr[i] * s } }
                }
            }
        }
        if let dweight, let partial {
            for chunk in 0..<chunks {
                let p = partial.pointer + chunk * c
                for i in 0..<c { dweight[i] += p[i] }
            }
        }
    }
}
