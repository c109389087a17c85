// Dimension letters: N values of a block.

/// One block of 8-bit blockwise quantization as bitsandbytes' CPU kernel does it
/// (`quantize_blockwise` with a 256-entry code such as `DynamicMap.signed`): absmax = max |x|,
/// each x·(1/absmax) mapped through a 65 536-entry lookup table of [-1, 1] to the nearest code
/// (ties to the lower one). The table, not an exact nearest search, is what makes the bytes
/// bitsandbytes writes, so Finch builds the same table. Used by 8-bit weights (FinchQuant) and
/// by the 8-bit optimizer's moments (`ComputeBackend.adamW8bitUpdate`).
public enum BlockwiseCodes {
    static let lutSize = 65_536

    /// The tables of the two dynamic maps, built once.
    public static let signedLUT = lookupTable(DynamicMap.signed)
    public static let unsignedLUT = lookupTable(DynamicMap.unsigned)

    /// codes [N] and absmax of x [N] from the table `lut` (= `lookupTable(code)`); an all-zero
    /// block keeps codes 0.
    @inline(__always)
    public static func quantizeBlock(_ x: UnsafePointer<Float>, count: Int, lut: UnsafePointer<UInt8>,
                                     codes: UnsafeMutablePointer<UInt8>, absmax: inout Float) {
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(x[i])) }
        absmax = m
        if m == 0 { for i in 0..<count { codes[i] = 0 }; return }
        let inv = 1 / m
        for i in 0..<count { codes[i] = lut[lutIndex(x[i] * inv)] }
    }

    /// bitsandbytes' `norm_to_lut_index`: (v + 1)·½·65535 + ½, truncated; GCC contracts the
    /// last multiply-add into one FMA (one rounding), so this does too.
    @inline(__always)
    static func lutIndex(_ value: Float) -> Int {
        let v = min(max(value, -1), 1)
        return Int(UInt16(Float(0.5).addingProduct((v + 1) * 0.5, 65535)))
    }

    /// Entry i covers the value −1 + 2i/65535 and holds the number of code midpoints below it.
    public static func lookupTable(_ code: [Float]) -> [UInt8] {
        precondition(code.count == 256)
        let mid = (0..<255).map { 0.5 * (code[$0] + code[$0 + 1]) }
        var lut = [UInt8](repeating: 0, count: lutSize)
        var c = 0
        for i in 0..<lutSize {
            let v: Float = -1 + (2 * Float(i)) / Float(lutSize - 1)
            while c < 255 && mid[c] < v { c += 1 }
            lut[i] = UInt8(c)
        }
        return lut
    }
}
