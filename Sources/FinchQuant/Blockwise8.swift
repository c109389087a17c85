import FinchCore

/// 8-bit blockwise quantization as bitsandbytes' CPU kernel does it (`quantize_blockwise` with a
/// 256-entry code, e.g. `DynamicMap.signed`), block by block with `BlockwiseCodes.quantizeBlock`.
public struct Blockwise8: Sendable {
    /// Codes, one per value.
    public var codes: [UInt8]
    /// Per block, float32.
    public var absmax: [Float]
    public var blocksize: Int

    /// Quantizes `values` in blocks of `blocksize` with `code` (256 ascending values in [-1, 1]).
    public static func quantize(_ values: UnsafeBufferPointer<Float>, code: [Float], blocksize: Int) -> Blockwise8 {
        precondition(code.count == 256 && blocksize > 0)
        let lut = BlockwiseCodes.lookupTable(code)
        let n = values.count
        let blocks = (n + blocksize - 1) / blocksize
        var codes = [UInt8](repeating: 0, count: n)
        var absmax = [Float](repeating: 0, count: blocks)
        lut.withUnsafeBufferPointer { l in
            codes.withUnsafeMutableBufferPointer { c in
                absmax.withUnsafeMutableBufferPointer { a in
                    for b in 0..<blocks {
                        BlockwiseCodes.quantizeBlock(values.baseAddress! + b * blocksize, count: min(blocksize, n - b * blocksize), lut: l.baseAddress!,
                                      codes: c.baseAddress! + b * blocksize, absmax: &a[b])
                    }
                }
            }
        }
        return Blockwise8(codes: codes, absmax: absmax, blocksize: blocksize)
    }
}
