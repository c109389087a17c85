import Foundation

// Dimension letters: N rows (tokens), H heads, D head dim, P positions.

/// Rotary position embedding in the "rotate half" layout of Hugging Face LLaMA:
/// pairs (i, i + D/2) rotate by angle `position · invFreq[i]`.
public struct RoPE: Sendable, Equatable {
    public let headDim: Int
    /// [D/2] inverse frequencies (after any scaling).
    public let invFreq: [Float]

    /// Scaling variants from a config's `rope_scaling`.
    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor`.
        case linear(factor: Float)
        /// Llama 3.1's frequency-dependent scaling.
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
    }

    /// Inverse frequencies computed in f32 exactly as transformers does: `1 / theta^(2i/D)`.
    public init(headDim: Int, theta: Float, scaling: Scaling = .none) {
        self.headDim = headDim
        var inv = (0..<headDim / 2).map { i -> Float in
            1 / Float(pow(Double(theta), Double(Float(2 * i) / Float(headDim))))
        }
        switch scaling {
        case .none: break
        case .linear(let f): inv = inv.map { $0 / f }
        case .llama3(let factor, let low, let high, let orig):
            let lowWavelen = Float(orig) / low, highWavelen = Float(orig) / high
            inv = inv.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Float(orig) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        invFreq = inv
    }

    /// Rotation with explicit inverse frequencies (e.g. llama.cpp's `rope_freqs` divisors already applied).
    public init(headDim: Int, invFreq: [Float]) {
        precondition(invFreq.count == headDim / 2)
        self.headDim = headDim
        self.invFreq = invFreq
    }

    /// Divides each inverse frequency by a factor (llama.cpp's `rope_freqs.weight`).
    public func dividingFrequencies(by factors: [Float]) -> RoPE {
        RoPE(headDim: headDim, invFreq: zip(invFreq, factors).map { $0 / $1 })
    }

    /// cos and sin of every (row, frequency) angle: [N, D/2] each, computed in f32 as transformers does.
    public struct Table: @unchecked Sendable {
        public let rows: Int
        public let cos: Buffer<Float>
        public let sin: Buffer<Float>
    }

    /// The angles for rows at `positions`, shared by every layer of a forward pass.
    public func table(positions: [Int32]) -> Table {
        let half = headDim / 2, n = positions.count
        let c = Buffer<Float>(count: n * half), s = Buffer<Float>(count: n * half)
        invFreq.withUnsafeBufferPointer { inv in
            Parallel.forEachRange(n, costPerItem: half * 40) { range in
                for r in range {
                    let p = Float(positions[r])
                    for i in 0..<half {
                        let a = p * inv[i]          // f32 product, as transformers computes it
                        c[r * half + i] = Foundation.cos(a)
                        s[r * half + i] = Foundation.sin(a)
                    }
                }
            }
        }
        return Table(rows: n, cos: c, sin: s)
    }

    /// Rotates x [N, H, D] in place by the table's angles (row n at table row n).
    /// `inverse` rotates by the negative angle: the backward of the forward rotation.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, table: Table, inverse: Bool = false) {
        let d = headDim, half = d / 2
        let sign: Float = inverse ? -1 : 1
        Parallel.forEachRange(table.rows, costPerItem: heads * d * 2) { range in
            for n in range {
                let cs = table.cos.pointer + n * half, sn = table.sin.pointer + n * half
                for h in 0..<heads {
                    let v = x + (n * heads + h) * d
                    for i in 0..<half {
                        let x1 = v[i], x2 = v[i + half]
                        let c = cs[i], s = sign * sn[i]
                        v[i] = x1 * c - x2 * s
                        v[i + half] = x2 * c + x1 * s
                    }
                }
            }
        }
    }

    /// Backward of `apply`, in place: dx [N, H, D] holds the gradient of the rotated values on
    /// entry and that of the values before rotation on exit. The rotation is orthogonal, so its
    /// adjoint is the rotation by the negative angle. (In place rather than accumulating: the
    /// gradients of q and k are rotated where they lie, before flowing into their projections.)
    public func backward(_ dx: UnsafeMutablePointer<Float>, heads: Int, table: Table) {
        apply(dx, heads: heads, table: table, inverse: true)
    }
}
