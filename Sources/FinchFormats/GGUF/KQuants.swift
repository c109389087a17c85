/// Dequantization of ggml's K-quants (256-element super-blocks), bit-identical to gguf-py.
///
/// Index letters used below, for element `e` of a super-block: sub-block `j = e / 32`,
/// group `g = e / 16`, half `hf = e / 128`, lane `l`.
enum KQuants {
    static let qk = 256

    /// block_q2_K (84 B): scales[16] (lo nibble scale, hi nibble min), qs[64] (2-bit),
    /// f16 d, f16 dmin. y = (d * sc[g]) * q - (dmin * m[g]).
    static func q2_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 84
            let scales = p
            let qs = p + 16
            let d = h[Int(loadU16(p + 80))]
            let dmin = h[Int(loadU16(p + 82))]
            let y = dst + b * qk
            for hf in 0..<2 {
                let q = qs + hf * 32
                for s in 0..<4 {
                    let shift = UInt8(2 * s)
                    for half in 0..<2 {
                        let g = hf * 8 + s * 2 + half
                        let dl = d * Float(scales[g] & 0x0f)
                        let ml = dmin * Float(scales[g] >> 4)
                        let out = y + hf * 128 + s * 32 + half * 16
                        let qq = q + half * 16
                        for l in 0..<16 {
                            out[l] = dl * Float((qq[l] >> shift) & 3) - ml
                        }
                    }
                }
            }
        }
    }

    /// block_q3_K (110 B): hmask[32], qs[64] (low 2 bits), scales[12] (16 × 6-bit, biased by 32),
    /// f16 d. q = lo2 - 4 * (1 - hbit); y = (d * (sc[g] - 32)) * q.
    static func q3_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { buf in
            let dls = buf.baseAddress!
            for b in 0..<blocks {
                let p = src.assumingMemoryBound(to: UInt8.self) + b * 110
                let hmask = p
                let qs = p + 32
                let sc = p + 96
                let d = h[Int(loadU16(p + 108))]
                for i in 0..<16 {
                    let low = i < 8 ? sc[i] & 0x0f : sc[i - 8] >> 4
                    let high = (sc[8 + i % 4] >> UInt8(2 * (i / 4))) & 3
                    dls[i] = d * Float(Int32(low | high << 4) - 32)
                }
                let y = dst + b * qk
                for hf in 0..<2 {
                    let q = qs + hf * 32
                    for s in 0..<4 {
                        let shift = UInt8(2 * s)
                        let hbit = UInt8(hf * 4 + s)
                        for half in 0..<2 {
                            let g = hf * 8 + s * 2 + half
                            let scale = dls[g]
                            let base = half * 16
                            let out = y + hf * 128 + s * 32 + base
                            for l in 0..<16 {
                                let lo = Int32((q[base + l] >> shift) & 3)
                                let hb = Int32((hmask[base + l] >> hbit) & 1) ^ 1
                                out[l] = scale * Float(lo - (hb << 2))
                            }
                        }
                    }
                }
            }
        }
    }

    /// The 8 six-bit (scale, min) pairs of Q4_K / Q5_K packed in 12 bytes.
    @inline(__always)
    static func scaleMin(_ s: UnsafePointer<UInt8>, _ j: Int) -> (UInt8, UInt8) {
        if j < 4 {
            return (s[j] & 63, s[j + 4] & 63)
        }
        let sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 2) & 0x30)
        let m = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30)
        return (sc, m)
    }

    /// block_q4_K (144 B): f16 d, f16 dmin, scales[12], qs[128] (4-bit; bytes 32c..32c+31 hold
    /// sub-block 2c in the low and 2c+1 in the high nibble). y = (d * sc[j]) * q - (dmin * m[j]).
    static func q4_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 144
            let d = h[Int(loadU16(p))]
            let dmin = h[Int(loadU16(p + 2))]
            let scales = p + 4
            let qs = p + 16
            let y = dst + b * qk
            for c in 0..<4 {
                let (sc0, m0) = scaleMin(scales, 2 * c)
                let (sc1, m1) = scaleMin(scales, 2 * c + 1)
                let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
                let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
                let q = qs + 32 * c
                let out = y + 64 * c
                for l in 0..<32 {
                    out[l] = d0 * Float(q[l] & 0x0f) - dm0
                    out[l + 32] = d1 * Float(q[l] >> 4) - dm1
                }
            }
        }
    }

    /// block_q5_K (176 B): f16 d, f16 dmin, scales[12], qh[32] (bit j of qh[l] is the 5th bit
    /// of element 32j+l), qs[128] as in Q4_K. y = (d * sc[j]) * q - (dmin * m[j]).
    static func q5_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 176
            let d = h[Int(loadU16(p))]
            let dmin = h[Int(loadU16(p + 2))]
            let scales = p + 4
            let qh = p + 16
            let qs = p + 48
            let y = dst + b * qk
            for c in 0..<4 {
                let (sc0, m0) = scaleMin(scales, 2 * c)
                let (sc1, m1) = scaleMin(scales, 2 * c + 1)
                let d0 = d * Float(sc0), dm0 = dmin * Float(m0)
                let d1 = d * Float(sc1), dm1 = dmin * Float(m1)
                let q = qs + 32 * c
                let out = y + 64 * c
                let s0 = UInt8(2 * c), s1 = UInt8(2 * c + 1)
                for l in 0..<32 {
                    let lo = (q[l] & 0x0f) | ((qh[l] >> s0) & 1) << 4
                    let hi = (q[l] >> 4) | ((qh[l] >> s1) & 1) << 4
                    out[l] = d0 * Float(lo) - dm0
                    out[l + 32] = d1 * Float(hi) - dm1
                }
            }
        }
    }

    /// block_q6_K (210 B): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8), f16 d.
    /// q = (lo | hi << 4) - 32; y = (d * scale[g]) * q.
    static func q6_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 210
            let ql = p
            let qh = p + 128
            let scales = UnsafeRawPointer(p + 192).assumingMemoryBound(to: Int8.self)
            let d = h[Int(loadU16(p + 208))]
            let y = dst + b * qk
            for hf in 0..<2 {
                let l4 = ql + 64 * hf
                let h2 = qh + 32 * hf
                let out = y + 128 * hf
                let sc = scales + 8 * hf
                // Elements 0..127 of this half: [0,32) lo nibble of l4[0..32) + bits 0-1,
                // [32,64) lo nibble of l4[32..64) + bits 2-3, [64,96) hi nibble of l4[0..32) + bits 4-5,
                // [96,128) hi nibble of l4[32..64) + bits 6-7.
                for s in 0..<4 {
                    let shift = UInt8(2 * s)
                    let nib = UInt8(4 * (s / 2))
                    let lb = 32 * (s % 2)
                    for half in 0..<2 {
                        let scale = d * Float(sc[2 * s + half])
                        let o = out + 32 * s + 16 * half
                        for l in 0..<16 {
                            let i = 16 * half + l
                            let lo = (l4[lb + i] >> nib) & 0x0f
                            let hi = (h2[i] >> shift) & 3
                            o[l] = scale * Float(Int32(lo | hi << 4) - 32)
                        }
                    }
                }
            }
        }
    }

    /// block_q8_K (292 B): f32 d, qs[256] (i8), bsums[16] (unused here). y = d * q.
    static func q8_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let p = src + b * 292
            let d = Float(bitPattern: p.loadUnaligned(as: UInt32.self).littleEndian)
            let qs = (p + 4).assumingMemoryBound(to: Int8.self)
            let y = dst + b * qk
            for l in 0..<256 { y[l] = d * Float(qs[l]) }
        }
    }
}
