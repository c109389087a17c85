import CFinchKernels
import FinchCore

// Dimension letters: N elements of the flattened tensor, B = ⌈N / blocksize⌉ blocks,
// B2 = ⌈B / 256⌉ blocks of the double quantization.

/// A tensor in bitsandbytes' blockwise 4-bit format (`Params4bit` + `QuantState`), bit for bit:
/// per block of `blocksize` consecutive elements of the flattened tensor, absmax = max |x|; each
/// element stores the nibble of the `type` code nearest x/absmax; two elements per byte, the
/// even one in the high nibble. With double quantization the float32 absmax vector is itself
/// stored as `offset` = its mean plus (absmax − offset) in 8 bits (signed dynamic map, blocks of
/// 256, float32 nested absmax), saving ~0.37 bits per weight at blocksize 64.
public final class FourBitTensor: @unchecked Sendable {
    /// The double-quantized form of the per-block absmax.
    public struct NestedScales: Sendable {
        /// [B] 8-bit codes of absmax − offset in `code`.
        public let codes: Buffer<UInt8>
        /// [B2] float32 absmax of each nested block.
        public let absmax: Buffer<Float>
        /// Mean of the float32 absmax vector.
        public let offset: Float
        public let blocksize: Int
        /// The 256-entry map (`DynamicMap.signed`).
        public let code: [Float]
    }

    public enum Scales: Sendable {
        /// [B] float32.
        case plain(Buffer<Float>)
        case nested(NestedScales)
    }

    public let type: FourBitType
    /// The unquantized tensor's shape, e.g. [out, in] for a linear weight.
    public let shape: [Int]
    /// N.
    public let count: Int
    public let blocksize: Int
    /// [⌈N/2⌉] packed nibbles.
    public let packed: Buffer<UInt8>
    public internal(set) var scales: Scales
    /// The 16 values of `type`, float32.
    public let code: [Float]

    public static let blocksizes = [32, 64, 128, 256, 512, 1024, 2048, 4096]

    public init(type: FourBitType, shape: [Int], blocksize: Int, packed: Buffer<UInt8>, scales: Scales) throws {
        guard Self.blocksizes.contains(blocksize) else { throw QuantError.invalidBlocksize(blocksize) }
        self.type = type
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.blocksize = blocksize
        self.packed = packed
        self.scales = scales
        self.code = type.code
        let blocks = (count + blocksize - 1) / blocksize
        guard packed.count == (count + 1) / 2 else {
            throw QuantError.malformed(tensor: "\(shape)", what: "\(packed.count) packed bytes, expected \((count + 1) / 2)")
        }
        switch scales {
        case .plain(let a) where a.count != blocks:
            throw QuantError.malformed(tensor: "\(shape)", what: "\(a.count) absmax values, expected \(blocks)")
        case .nested(let n) where n.codes.count != blocks || n.absmax.count != (blocks + n.blocksize - 1) / n.blocksize:
            throw QuantError.malformed(tensor: "\(shape)", what: "double-quantized absmax of \(n.codes.count) codes and \(n.absmax.count) nested scales, expected \(blocks) and \((blocks + n.blocksize - 1) / n.blocksize)")
        default: break
        }
    }

    /// Number of blocks, B.
    public var blockCount: Int { (count + blocksize - 1) / blocksize }

    /// Whether the absmax vector is double-quantized.
    public var isDoubleQuantized: Bool { if case .nested = scales { true } else { false } }

    /// Bytes held: packed nibbles plus scales.
    public var byteCount: Int {
        switch scales {
        case .plain(let a): packed.byteCount + a.byteCount
        case .nested(let n): packed.byteCount + n.codes.byteCount + n.absmax.byteCount + 4 + 1024
        }
    }

    // MARK: quantize

    /// Quantizes float32 `values` (flattened `shape`) as `bitsandbytes.functional.quantize_4bit`
    /// does on CPU (`compress_statistics` = `doubleQuant`): identical bytes and scales.
    public static func quantize(_ values: UnsafeBufferPointer<Float>, shape: [Int], type: FourBitType,
                                blocksize: Int = 64, doubleQuant: Bool = false) throws -> FourBitTensor {
        guard blocksizes.contains(blocksize) else { throw QuantError.invalidBlocksize(blocksize) }
        let n = values.count
        precondition(n == shape.reduce(1, *), "shape \(shape) does not hold \(n) values")
        let blocks = (n + blocksize - 1) / blocksize
        let full = n / blocksize
        let absmax = Buffer<Float>(uninitializedCount: blocks)
        let packed = Buffer<UInt8>(count: (n + 1) / 2)
        let (order, bounds) = type.buckets
        // Nibble of a scaled value: the number of midpoints below it (torch.bucketize), mapped to the code's order.
        @inline(__always) func nibble(_ s: Float) -> UInt8 {
            var i = 0
            while i < 15 && bounds[i] < s { i += 1 }
            return order[i]
        }
        let src = values.baseAddress!
        let dst = packed.pointer
        // Blocks are independent; a byte never straddles two blocks because blocksize is even.
        // Full blocks in the vectorized kernel; the trailing partial one here.
        bounds.withUnsafeBufferPointer { bp in
            order.withUnsafeBufferPointer { op in
                Parallel.forEachRange(full, costPerItem: blocksize * 2) { range in
                    finch_quant4_blocks(dst + range.lowerBound * blocksize / 2, absmax.pointer + range.lowerBound,
                                        src + range.lowerBound * blocksize, range.count, blocksize, bp.baseAddress!, op.baseAddress!)
                }
            }
        }
        if full < blocks {
            // The trailing partial block divides by its (clamped) absmax.
            let start = full * blocksize
            var m: Float = 0
            for i in start..<n { m = max(m, abs(src[i])) }
            let am = max(m, 1e-38)
            absmax[full] = am
            let scaled = { (x: Float) in min(max(x / am, -1), 1) }
            var i = start
            while i < n {
                let hi = nibble(scaled(src[i]))
                let lo = i + 1 < n ? nibble(scaled(src[i + 1])) : nibble(0)   // odd N: padded with 0
                dst[i / 2] = hi << 4 | lo
                i += 2
            }
        }
        guard doubleQuant else {
            return try FourBitTensor(type: type, shape: shape, blocksize: blocksize, packed: packed, scales: .plain(absmax))
        }
        return try FourBitTensor(type: type, shape: shape, blocksize: blocksize, packed: packed,
                                 scales: .nested(nest(absmax)))
    }

    /// Double quantization of a float32 absmax vector: offset = its mean (PyTorch's float32 sum),
    /// then absmax − offset in 8-bit blocks of 256 with the signed dynamic map.
    static func nest(_ absmax: Buffer<Float>) -> NestedScales {
        let offset = TorchSum.mean(UnsafeBufferPointer(absmax.buffer))
        let centered = absmax.array.map { $0 - offset }
        let q = centered.withUnsafeBufferPointer { Blockwise8.quantize($0, code: DynamicMap.signed, blocksize: 256) }
        return NestedScales(codes: Buffer(q.codes), absmax: Buffer(q.absmax), offset: offset,
                            blocksize: 256, code: DynamicMap.signed)
    }

    // MARK: dequantize

    /// [B] the float32 absmax of every block (for double quantization, decoded as bitsandbytes
    /// does: code[q] · nested absmax, then + offset, each rounded to float32).
    public func absmax() -> Buffer<Float> {
        switch scales {
        case .plain(let a): return a
        case .nested(let n):
            let out = Buffer<Float>(uninitializedCount: blockCount)
            for b in 0..<blockCount {
                let v = n.code[Int(n.codes[b])] * n.absmax[b / n.blocksize]
                out[b] = v + n.offset
            }
            return out
        }
    }

    /// Elements `start ..< start + count` of the flattened tensor into `out`, float32, using
    /// `absmax` from `absmax()` (pass it in when dequantizing several ranges).
    public func dequantize(elements start: Int, count: Int, absmax: Buffer<Float>, into out: UnsafeMutablePointer<Float>) {
        precondition(start >= 0 && start + count <= self.count)
        code.withUnsafeBufferPointer { c in
            finch_dequant4_f32(out, packed.pointer, absmax.pointer, c.baseAddress!, blocksize, start, count)
        }
    }

    /// The whole tensor in float32 (`dequantize_4bit`), dequantized in parallel.
    public func dequantize() -> Buffer<Float> {
        let out = Buffer<Float>(uninitializedCount: count)
        dequantizeAll(into: out.pointer)
        return out
    }

    /// The whole tensor into `out` [N], in parallel; with `roundedToBF16` each value is rounded
    /// to bf16 precision (kept as f32: `dequantize_4bit` in a bf16 quant state, widened), each
    /// 4 KiB piece while it is in cache.
    public func dequantizeAll(into out: UnsafeMutablePointer<Float>, roundedToBF16: Bool = false) {
        let a = absmax()
        let chunks = (count + 1023) / 1024
        Parallel.forEachRange(chunks, costPerItem: 1024) { range in
            var s = range.lowerBound * 1024
            let end = min(range.upperBound * 1024, count)
            guard roundedToBF16 else { dequantize(elements: s, count: end - s, absmax: a, into: out + s); return }
            while s < end {
                let n = min(1024, end - s)
                dequantize(elements: s, count: n, absmax: a, into: out + s)
                finch_round_to_bf16_f32(out + s, out + s, n)
                s += n
            }
        }
    }
}
