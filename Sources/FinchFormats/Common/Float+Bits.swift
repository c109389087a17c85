import FinchCore

/// Bit-exact conversions between `Float` and the 16- and 8-bit float formats found in checkpoints.
///
/// Widening conversions are exact (NaN payloads are kept, as NumPy does). Narrowing ones round
/// to nearest, ties to even, like NumPy's `astype(float16)` and ggml's `ggml_compute_fp32_to_bf16`.
/// binary16 and FP8 live here; bfloat16 is FinchCore's ``BFloat16`` (scalar and vectorized), which
/// the bf16 members below forward to.
extension Float {
    /// The IEEE binary16 value with bit pattern `h`, widened exactly
    /// (subnormals, infinities and NaN payloads are preserved, as in NumPy).
    @inlinable
    public init(f16Bits h: UInt16) {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1f
        let man = UInt32(h & 0x3ff)
        if exp == 0x1f {
            self.init(bitPattern: sign | 0x7f80_0000 | (man << 13))
        } else if exp != 0 {
            self.init(bitPattern: sign | ((exp + 112) << 23) | (man << 13))
        } else if man == 0 {
            self.init(bitPattern: sign)
        } else {
            // Subnormal: man * 2^-24, exact in Float.
            let v = Float(man) * 0x1p-24
            self.init(bitPattern: v.bitPattern | sign)
        }
    }

    /// The bfloat16 value with bit pattern `b` (the top 16 bits of a Float), widened exactly
    /// (``BFloat16/toFloat(_:)``).
    @inlinable
    public init(bf16Bits b: UInt16) {
        self = BFloat16.toFloat(b)
    }

    /// The OCP FP8 E4M3 ("e4m3fn": bias 7, no infinities, S.1111.111 is NaN) value with bits `b`.
    @inlinable
    public init(f8E4M3Bits b: UInt8) {
        let sign = UInt32(b & 0x80) << 24
        let exp = UInt32(b >> 3) & 0xf
        let man = UInt32(b & 0x7)
        if exp == 0xf && man == 0x7 {
            self.init(bitPattern: sign | 0x7fc0_0000)
        } else if exp != 0 {
            self.init(bitPattern: sign | ((exp + 120) << 23) | (man << 20))
        } else {
            let v = Float(man) * 0x1p-9
            self.init(bitPattern: v.bitPattern | sign)
        }
    }

    /// The OCP FP8 E5M2 value (IEEE-like, bias 15, with infinities and NaN) with bits `b`.
    @inlinable
    public init(f8E5M2Bits b: UInt8) {
        self.init(f16Bits: UInt16(b) << 8)
    }

    /// This value rounded to IEEE binary16 (nearest, ties to even; overflow gives infinity;
    /// NaN stays NaN with its top payload bits, as NumPy's `astype(float16)`).
    @inlinable
    public var f16Bits: UInt16 {
        let x = bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let ax = x & 0x7fff_ffff
        if ax >= 0x7f80_0000 {
            if ax == 0x7f80_0000 { return sign | 0x7c00 }
            var h = UInt16(truncatingIfNeeded: 0x7c00 + ((ax & 0x007f_ffff) >> 13))
            if h == 0x7c00 { h += 1 }
            return sign | h
        }
        if ax < 0x3880_0000 {  // below 2^-14: half subnormal or zero
            if ax <= 0x3300_0000 { return sign }  // <= 2^-25 rounds (ties-to-even) to zero
            let m = (Float(bitPattern: ax) * 0x1p24).rounded(.toNearestOrEven)
            return sign | UInt16(m)
        }
        var r = ax &- 0x3800_0000
        r = r &+ 0xfff &+ ((r >> 13) & 1)
        let h = r >> 13
        return sign | (h >= 0x7c00 ? 0x7c00 : UInt16(truncatingIfNeeded: h))
    }

    /// This value rounded to bfloat16 (nearest, ties to even; NaN is kept quiet), exactly as
    /// ggml's `ggml_compute_fp32_to_bf16` and gguf-py's BF16 quantizer (``BFloat16/from(_:)``).
    @inlinable
    public var bf16Bits: UInt16 {
        BFloat16.from(self)
    }
}

/// Bulk conversions of packed little-endian 16-bit floats (any alignment) to `Float`.
public enum HalfConversion {
    /// Converts `count` binary16 values at `src` (unaligned allowed) to Float at `dst`.
    public static func f16ToFloat(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        let table = F16Table.shared.table
        for i in 0..<count {
            dst[i] = table[Int(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))]
        }
    }

    /// Converts `count` bfloat16 values at `src` (unaligned allowed) to Float at `dst`
    /// (with FinchCore's vectorized ``BFloat16`` conversion when `src` is 2-byte aligned).
    public static func bf16ToFloat(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        if Int(bitPattern: src) % MemoryLayout<BF16Bits>.alignment == 0 {
            BFloat16.convert(src.assumingMemoryBound(to: BF16Bits.self), to: dst, count: count)
            return
        }
        for i in 0..<count {
            dst[i] = BFloat16.toFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: BF16Bits.self))
        }
    }

    /// Rounds `count` floats to binary16 bits (nearest-even).
    public static func floatToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { dst[i] = src[i].f16Bits }
    }

    /// Rounds `count` floats to bfloat16 bits (nearest-even), with FinchCore's vectorized ``BFloat16`` conversion.
    public static func floatToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        BFloat16.convert(src, to: dst, count: count)
    }
}

/// All 65 536 binary16 values widened once (256 KiB), for fast bulk conversion.
final class F16Table: @unchecked Sendable {
    static let shared = F16Table()
    let table: UnsafeMutablePointer<Float>
    private init() {
        table = .allocate(capacity: 65536)
        for i in 0..<65536 { table[i] = Float(f16Bits: UInt16(i)) }
    }
}
