/// Block dequantization kernels for ggml types, bit-identical to gguf-py's
/// `gguf.quants.dequantize` (which mirrors ggml's `dequantize_row_*`).
///
/// Every kernel converts `blocks` consecutive blocks from `src` (raw, any alignment) into
/// `blocks * blockSize` floats at `dst`. Arithmetic is done in Float in exactly the order
/// gguf-py uses (e.g. `(d * q) + m`, `(d * scale) * q`); Swift does not contract `a * b + c`
/// into a fused multiply-add, so every rounding step matches NumPy's.
enum GGMLDequantizer {
    typealias Kernel = @Sendable (_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) -> Void

    /// The kernel for `type`, or nil when it is not supported.
    static func kernel(for type: GGMLType) -> Kernel? {
        switch type {
        case .f32: return f32
        case .f16: return f16
        case .bf16: return bf16
        case .f64: return f64
        case .i8: return i8
        case .i16: return i16
        case .i32: return i32
        case .i64: return i64
        case .q4_0: return q4_0
        case .q4_1: return q4_1
        case .q5_0: return q5_0
        case .q5_1: return q5_1
        case .q8_0: return q8_0
        case .q2_K: return KQuants.q2_K
        case .q3_K: return KQuants.q3_K
        case .q4_K: return KQuants.q4_K
        case .q5_K: return KQuants.q5_K
        case .q6_K: return KQuants.q6_K
        case .q8_K: return KQuants.q8_K
        case .iq4_nl: return OtherQuants.iq4_nl
        case .iq4_xs: return OtherQuants.iq4_xs
        case .tq1_0: return OtherQuants.tq1_0
        case .tq2_0: return OtherQuants.tq2_0
        case .mxfp4: return OtherQuants.mxfp4
        case .q8_1, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq1_m, .nvfp4, .q1_0:
            return nil
        }
    }

    // MARK: - Plain types

    static func f32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
    }

    static func f16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        HalfConversion.f16ToFloat(src, dst, count: n)
    }

    static func bf16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        HalfConversion.bf16ToFloat(src, dst, count: n)
    }

    static func f64(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    }

    static func i8(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        let p = src.assumingMemoryBound(to: Int8.self)
        for i in 0..<n { dst[i] = Float(p[i]) }
    }

    static func i16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
    }

    static func i32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
    }

    static func i64(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
    }

    // MARK: - Legacy 32-element quants

    /// block_q4_0 (18 B): f16 d, 16 B nibbles; y[j] = d * (lo(q[j]) - 8), y[j+16] = d * (hi(q[j]) - 8).
    static func q4_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 18
            let d = h[Int(loadU16(p))]
            let qs = p + 2
            let y = dst + b * 32
            for j in 0..<16 {
                y[j] = d * Float(Int32(qs[j] & 0x0f) - 8)
                y[j + 16] = d * Float(Int32(qs[j] >> 4) - 8)
            }
        }
    }

    /// block_q4_1 (20 B): f16 d, f16 m, 16 B nibbles; y = d * q + m.
    static func q4_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 20
            let d = h[Int(loadU16(p))]
            let m = h[Int(loadU16(p + 2))]
            let qs = p + 4
            let y = dst + b * 32
            for j in 0..<16 {
                y[j] = d * Float(qs[j] & 0x0f) + m
                y[j + 16] = d * Float(qs[j] >> 4) + m
            }
        }
    }

    /// block_q5_0 (22 B): f16 d, u32 high bits, 16 B nibbles; y = d * (q - 16).
    static func q5_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 22
            let d = h[Int(loadU16(p))]
            let qh = UnsafeRawPointer(p + 2).loadUnaligned(as: UInt32.self).littleEndian
            let qs = p + 6
            let y = dst + b * 32
            for j in 0..<16 {
                let lo = Int32(qs[j] & 0x0f) | Int32((qh >> UInt32(j)) & 1) << 4
                let hi = Int32(qs[j] >> 4) | Int32((qh >> UInt32(j + 16)) & 1) << 4
                y[j] = d * Float(lo - 16)
                y[j + 16] = d * Float(hi - 16)
            }
        }
    }

    /// block_q5_1 (24 B): f16 d, f16 m, u32 high bits, 16 B nibbles; y = d * q + m.
    static func q5_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 24
            let d = h[Int(loadU16(p))]
            let m = h[Int(loadU16(p + 2))]
            let qh = UnsafeRawPointer(p + 4).loadUnaligned(as: UInt32.self).littleEndian
            let qs = p + 8
            let y = dst + b * 32
            for j in 0..<16 {
                let lo = UInt32(qs[j] & 0x0f) | ((qh >> UInt32(j)) & 1) << 4
                let hi = UInt32(qs[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
                y[j] = d * Float(lo) + m
                y[j + 16] = d * Float(hi) + m
            }
        }
    }

    /// block_q8_0 (34 B): f16 d, 32 × i8; y = q * d.
    static func q8_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let h = F16Table.shared.table
        for b in 0..<blocks {
            let p = src.assumingMemoryBound(to: UInt8.self) + b * 34
            let d = h[Int(loadU16(p))]
            let qs = UnsafeRawPointer(p + 2).assumingMemoryBound(to: Int8.self)
            let y = dst + b * 32
            for j in 0..<32 { y[j] = Float(qs[j]) * d }
        }
    }
}

/// Little-endian u16 at `p` (any alignment).
@inline(__always)
func loadU16(_ p: UnsafePointer<UInt8>) -> UInt16 {
    UInt16(p[0]) | UInt16(p[1]) << 8
}
