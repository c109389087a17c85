/// Dequantization of the less common ggml types gguf-py supports with simple arithmetic:
/// IQ4_NL, IQ4_XS (non-linear 4-bit), TQ1_0, TQ2_0 (ternary) and MXFP4. Bit-identical to gguf-py.
enum OtherQuants {
    /// Non-linear 4-bit code book shared by IQ4_NL and IQ4_XS.
    static let iq4Values: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
    /// FP4 E2M1 values doubled (MXFP4 code book).
    static let mxfp4Values: [Int8] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// block_iq4_nl (18 B): f16 d, 16 B nibbles indexing ``iq4Values``; y = d * kv[q].
    static func iq4_nl(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        iq4Values.withUnsafeBufferPointer { kv in
            for b in 0..<blocks {
                let p = src.assumingMemoryBound(to: UInt8.self) + b * 18
                let d = h[Int(loadU16(p))]
                let qs = p + 2
                let y = dst + b * 32
                for j in 0..<16 {
                    y[j] = d * Float(kv[Int(qs[j] & 0x0f)])
                    y[j + 16] = d * Float(kv[Int(qs[j] >> 4)])
                }
            }
        }
    }

    /// block_iq4_xs (136 B): f16 d, u16 scales_h, scales_l[4], qs[128]; 8 sub-blocks of 32 with
    /// 6-bit scales biased by 32; y = (d * scale) * kv[q].
    static func iq4_xs(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        iq4Values.withUnsafeBufferPointer { kv in
            for b in 0..<blocks {
                let p = src.assumingMemoryBound(to: UInt8.self) + b * 136
                let d = h[Int(loadU16(p))]
                let sh = loadU16(p + 2)
                let sl = p + 4
                let qs = p + 8
                let y = dst + b * 256
                for ib in 0..<8 {
                    let lo = (sl[ib / 2] >> UInt8(4 * (ib % 2))) & 0x0f
                    let hi = UInt8(truncatingIfNeeded: sh >> UInt16(2 * ib)) & 3
                    let dl = d * Float(Int32(lo | hi << 4) - 32)
                    let q = qs + 16 * ib
                    let out = y + 32 * ib
                    for l in 0..<16 {
                        out[l] = dl * Float(kv[Int(q[l] & 0x0f)])
                        out[l + 16] = dl * Float(kv[Int(q[l] >> 4)])
                    }
                }
            }
        }
    }

    /// block_tq2_0 (66 B): qs[64] (2-bit, value - 1), f16 d; y = d * q.
    static func tq2_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 66
            let d = h[Int(loadU16(p + 64))]
            let y = dst + b * 256
            for hf in 0..<2 {
                let q = p + 32 * hf
                for s in 0..<4 {
                    let shift = UInt8(2 * s)
                    let out = y + 128 * hf + 32 * s
                    for l in 0..<32 { out[l] = d * Float(Int32((q[l] >> shift) & 3) - 1) }
                }
            }
        }
    }

    /// block_tq1_0 (54 B): qs[48] and qh[4] packing 5 (or 4) base-3 digits per byte, f16 d.
    /// Digit k of byte v is `((v * 3^k mod 256) * 3) >> 8`; y = d * (digit - 1).
    static func tq1_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        let pow3: [UInt8] = [1, 3, 9, 27, 81]
        pow3.withUnsafeBufferPointer { pw in
            for b in 0..<blocks {
                let p = src.assumingMemoryBound(to: UInt8.self) + b * 54
                let d = h[Int(loadU16(p + 52))]
                let y = dst + b * 256
                @inline(__always) func digit(_ v: UInt8, _ k: Int) -> Float {
                    let m = v &* pw[k]
                    return Float(Int32((UInt16(m) * 3) >> 8) - 1)
                }
                for k in 0..<5 {
                    for l in 0..<32 { y[32 * k + l] = d * digit(p[l], k) }
                }
                for k in 0..<5 {
                    for l in 0..<16 { y[160 + 16 * k + l] = d * digit(p[32 + l], k) }
                }
                for k in 0..<4 {
                    for l in 0..<4 { y[240 + 4 * k + l] = d * digit(p[48 + l], k) }
                }
            }
        }
    }

    /// block_mxfp4 (17 B): e8m0 exponent byte, 16 B nibbles indexing ``mxfp4Values``;
    /// y = 2^(e-128) * kv[q] (the doubled code book makes this the OCP MXFP4 value).
    static func mxfp4(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        mxfp4Values.withUnsafeBufferPointer { kv in
            for b in 0..<blocks {
                let p = src.assumingMemoryBound(to: UInt8.self) + b * 17
                let e = UInt32(p[0])
                let d = Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << e : (e - 1) << 23)
                let qs = p + 1
                let y = dst + b * 32
                for j in 0..<16 {
                    y[j] = d * Float(kv[Int(qs[j] & 0x0f)])
                    y[j + 16] = d * Float(kv[Int(qs[j] >> 4)])
                }
            }
        }
    }
}
