import FinchCore

/// 8-bit blockwise quantization as bitsandbytes' CPU kernel does it (`quantize_blockwise` with a
/// 256-entry code, e.g. `DynamicMap.signed`): per block of `blocksize` values absmax = max |x|,
/// each x·(1/absmax) is mapped through a 65 536-entry lookup table of [-1, 1] to the nearest code
/// (ties to the lower one). The table, not an exact nearest search, is what makes the bytes
/// bitsandbytes writes, so Finch builds the same table.
public struct Blockwise8: Sendable {
    /// Codes, one per value.
    public var codes: [UInt8]
    /// Per block, float32.
    public var absmax: [Float]
    public var blocksize: Int

    static let lutSize = 65_536

    /// Quantizes `values` in blocks of `blocksize` with `code` (256 ascending values in [-1, 1]).
    public static func quantize(_ values: UnsafeBufferPointer<Float>, code: [Float], blocksize: Int) -> Blockwise8 {
        precondition(code.count == 256 && blocksize > 0)
        let lut = lookupTable(code)
        let n = values.count
        let blocks = (n + blocksize - 1) / blocksize
        var codes = [UInt8](repeating: 0, count: n)
        var absmax = [Float](repeating: 0, count: blocks)
        lut.withUnsafeBufferPointer { l in
            codes.withUnsafeMutableBufferPointer { c in
                absmax.withUnsafeMutableBufferPointer { a in
                    for b in 0..<blocks {
                        quantizeBlock(values.baseAddress! + b * blocksize, count: min(blocksize, n - b * blocksize), lut: l.baseAddress!,
                                      codes: c.baseAddress! + b * blocksize, absmax: &a[b])
                    }
                }
            }
        }
        return Blockwise8(codes: codes, absmax: absmax, blocksize: blocksize)
    }

    /// One block: absmax = max |x| and each code from the table `lut` (= `lookupTable(code)`);
    /// an all-zero block keeps codes 0.
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
    static func lutIndex(_ value: Float) -> Int {
        let v = min(max(value, -1), 1)
        return Int(UInt16(Float(0.5).addingProduct((v + 1) * 0.5, 65535)))
    }

    /// Entry i covers the value −1 + 2i/65535 and holds the number of code midpoints below it.
    public static func lookupTable(_ code: [Float]) -> [UInt8] {
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
