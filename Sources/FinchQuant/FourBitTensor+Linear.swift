import CFinchKernels
import FinchCore

extension FourBitTensor: QuantizedMatrix {
    public func dequantize(into out: UnsafeMutablePointer<Float>) { dequantizeAll(into: out) }

    public func dequantizeRoundedToBF16(into out: UnsafeMutablePointer<Float>) { dequantizeAll(into: out, roundedToBF16: true) }

    public func requantize(from values: UnsafePointer<Float>) throws -> Float {
        let fresh = try FourBitTensor.quantize(UnsafeBufferPointer(start: values, count: count), shape: shape,
                                                type: type, blocksize: blocksize, doubleQuant: isDoubleQuantized)
        packed.pointer.update(from: fresh.packed.pointer, count: packed.count)
        scales = fresh.scales
        return maxError(against: values, count: count)
    }

    /// The fused 4-bit product of `finch_linear4_small` (a 2-D weight whose rows start on a block):
    /// each block's products summed, then scaled by its absmax, so it differs from expanding W
    /// by float rounding only.
    public func multiplySmall(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        guard shape.count == 2, shape[1] % blocksize == 0 else { return false }
        let n = Int32(shape[0]), k = Int32(shape[1])
        return code.withUnsafeBufferPointer { c in
            switch scales {
            case .plain(let a):
                return finch_linear4_small(y, shape[0], x, shape[1], Int32(m), n, k, packed.pointer, c.baseAddress!,
                                           Int32(blocksize), a.pointer, nil, nil, nil, 0, 0, accumulate ? 1 : 0) != 0
            case .nested(let s):
                return s.code.withUnsafeBufferPointer { nc in
                    finch_linear4_small(y, shape[0], x, shape[1], Int32(m), n, k, packed.pointer, c.baseAddress!,
                                        Int32(blocksize), nil, s.codes.pointer, s.absmax.pointer, nc.baseAddress!,
                                        Int32(s.blocksize), s.offset, accumulate ? 1 : 0) != 0
                }
            }
        }
    }
}
