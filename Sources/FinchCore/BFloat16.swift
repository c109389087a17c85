import CFinchKernels

/// bfloat16 stored as its raw 16 bits (the top half of an IEEE float32).
public typealias BF16Bits = UInt16

public enum BFloat16 {
    /// Round-to-nearest-even conversion of one value.
    @inlinable public static func from(_ f: Float) -> BF16Bits {
        var u = f.bitPattern
        if (u & 0x7fff_ffff) > 0x7f80_0000 { return BF16Bits(truncatingIfNeeded: (u >> 16) | 0x40) }
        u &+= 0x7fff &+ ((u >> 16) & 1)
        return BF16Bits(truncatingIfNeeded: u >> 16)
    }

    /// Exact widening of one value.
    @inlinable public static func toFloat(_ b: BF16Bits) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// Converts `n` floats to bfloat16 (round-to-nearest-even), vectorized.
    public static func convert(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<BF16Bits>, count n: Int) {
        finch_f32_to_bf16(dst, src, n)
    }

    /// Rounds `n` floats to bfloat16 precision, kept as floats (the values a bf16 operand holds,
    /// widened); `dst` may be `src`. On all cores for large counts.
    public static func round(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count n: Int) {
        Parallel.forEachRange(n, costPerItem: 1, grain: 1 << 18) { r in
            finch_round_to_bf16_f32(dst + r.lowerBound, src + r.lowerBound, r.count)
        }
    }

    /// Widens `n` bfloat16 values to float, vectorized.
    public static func convert(_ src: UnsafePointer<BF16Bits>, to dst: UnsafeMutablePointer<Float>, count n: Int) {
        finch_bf16_to_f32(dst, src, n)
    }
}
