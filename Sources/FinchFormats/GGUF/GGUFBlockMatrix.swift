import CFinchKernels
import FinchCore

// Dimension letters: O rows (output features), I columns (input features, ne0), M input rows,
// T rows of a tile.

/// A GGUF weight [O, I] kept in its quantized blocks, mapped from the file (no f32 copy): the
/// frozen base of a LoRA run, of generation and of serving on a quantized GGUF as llama.cpp
/// holds it. Products run on f32 values expanded from the blocks (`LinearWeight` expands the
/// whole matrix into reused scratch for a GEMM, `multiplySmall` tile by tile for decoding): the
/// same numbers as a model whose weights were dequantized when it loaded.
///
/// Rows may be stored in another order than the model's (`rowOrder`: llama.cpp keeps q / k rows
/// in its interleaved rotary order); every expansion puts them back.
public final class GGUFBlockMatrix: QuantizedMatrix, @unchecked Sendable {
    /// The types kept as blocks: llama.cpp's legacy and K-quants.
    public static let keptTypes: Set<GGMLType> = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    /// Model row o is stored row `rowOrder[o]` (nil: the same).
    public let rowOrder: [Int]?
    /// Bytes of one stored row.
    let rowBytes: Int
    let kernel: GGMLDequantizer.Kernel
    /// The file the blocks are mapped from (kept open while the blocks are used).
    let file: GGUFFile
    /// The blocks: in the mapping, or in memory of their own after `requantize`.
    private(set) var blocks: UnsafeRawPointer
    private var owned: UnsafeMutableRawPointer?

    /// The blocks of `tensor` (2-D, ne0 = I), in `file`.
    /// - Throws: ``FormatError/unsupportedTensorType(path:tensor:type:)`` for a type not in
    ///   `keptTypes`, ``FormatError/invalidShape(path:tensor:reason:)`` for a tensor that is not a
    ///   matrix of whole blocks or a `rowOrder` that is not a permutation of its rows.
    public init(file: GGUFFile, tensor t: GGUFTensorInfo, rowOrder: [Int]? = nil) throws {
        guard Self.keptTypes.contains(t.type), let kernel = GGMLDequantizer.kernel(for: t.type) else {
            throw FormatError.unsupportedTensorType(path: file.path, tensor: t.name, type: t.type.name)
        }
        guard t.dimensions.count == 2, t.dimensions[0] % t.type.blockSize == 0 else {
            throw FormatError.invalidShape(path: file.path, tensor: t.name,
                                           reason: "kept as \(t.type.name) blocks, it must be a matrix whose rows are whole blocks of \(t.type.blockSize)")
        }
        let n = t.dimensions[1]
        columns = t.dimensions[0]; rows = n
        if let order = rowOrder, order.count != n || Set(order).count != n || order.contains(where: { $0 < 0 || $0 >= n }) {
            throw FormatError.invalidShape(path: file.path, tensor: t.name, reason: "the row order given is not a permutation of its \(n) rows")
        }
        type = t.type; self.rowOrder = rowOrder; self.kernel = kernel; self.file = file
        rowBytes = columns / t.type.blockSize * t.type.typeSize
        guard let base = file.rawBytes(t).baseAddress else {
            throw FormatError.invalidShape(path: file.path, tensor: t.name, reason: "it holds no data")
        }
        blocks = base
    }

    deinit { owned?.deallocate() }

    public var byteCount: Int { rows * rowBytes }

    /// The stored row holding model row `o`.
    @inline(__always) func storedRow(_ o: Int) -> UnsafeRawPointer { blocks + (rowOrder?[o] ?? o) * rowBytes }

    /// Model rows `range` expanded into `out` [range.count, I].
    @inline(__always) func expand(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let perRow = columns / type.blockSize
        if rowOrder == nil {
            kernel(blocks + range.lowerBound * rowBytes, out, range.count * perRow)
        } else {
            for (k, o) in range.enumerated() { kernel(storedRow(o), out + k * columns, perRow) }
        }
    }

    public var expandsRows: Bool { true }

    public func expandRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        Parallel.forEachRange(range.count, costPerItem: columns * 2) { r in
            expand((range.lowerBound + r.lowerBound)..<(range.lowerBound + r.upperBound), into: out + r.lowerBound * columns)
        }
    }

    public func dequantize(into out: UnsafeMutablePointer<Float>) {
        Parallel.forEachRange(rows, costPerItem: columns * 2) { r in expand(r, into: out + r.lowerBound * columns) }
    }

    public func dequantizeRoundedToBF16(into out: UnsafeMutablePointer<Float>) {
        Parallel.forEachRange(rows, costPerItem: columns * 3) { r in
            let dst = out + r.lowerBound * columns
            expand(r, into: dst)
            BFloat16.round(dst, to: dst, count: r.count * columns)
        }
    }

    /// Rows of a decoding tile: small enough that one tile's product runs on one thread
    /// (`finch_linear_small_f32` splits products of 32 768 weights or more across threads).
    var tileRows: Int { max(1, min(16, 32_767 / columns)) }

    /// y [M, O] (+)= x [M, I] · Wᵀ, a tile of rows at a time expanded to f32 and multiplied by the
    /// same kernel a dequantized weight's decoding runs (each row's sum computed as there).
    public func multiplySmall(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        let t = tileRows, tiles = (rows + t - 1) / t
        Parallel.forEachRange(tiles, costPerItem: t * columns * 2) { range in
            let tile = UnsafeMutablePointer<Float>.allocate(capacity: t * columns)
            defer { tile.deallocate() }
            for i in range {
                let r = (i * t)..<min(rows, (i + 1) * t)
                expand(r, into: tile)
                finch_linear_small_f32(y + r.lowerBound, rows, x, columns, tile, Int32(m), Int32(r.count), Int32(columns),
                                       accumulate ? 1 : 0)
            }
        }
        return true
    }

    /// y [M, O] (+)= x [M, I] · Wᵀ in integers, as llama.cpp decodes: x quantized in groups of 32
    /// (`QuantizedActivations`), each block's weights unpacked in registers and multiplied as u8 × s8
    /// (`finch_block_gemv_q8`), the block scales applied in f32. False for Q2_K / Q3_K (the float
    /// tiles of `multiplySmall` then) and for more rows than the kernel takes.
    public func multiplySmallInt8(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        guard finch_block_dot_supported(Int32(type.rawValue)) != 0, m <= 4 else { return false }
        return QuantizedActivations.with(x, rows: m, columns: columns) { q in
            (rowOrder ?? []).withUnsafeBufferPointer { order in
                finch_block_gemv_q8(Int32(type.rawValue), blocks, rowBytes, rowOrder == nil ? nil : order.baseAddress, nil,
                                    Int32(m), Int32(rows), Int32(columns), q.values, q.scales, q.sums, y, rows, accumulate ? 1 : 0) != 0
            }
        } ?? false
    }

    /// Whether `requantize` can write this type (llama.cpp's reference quantizers Finch has).
    public var canRequantize: Bool { [.q8_0, .q4_0, .q5_0, .q4_K, .q6_K].contains(type) }

    /// The blocks of `values` [O, I] in this type (llama.cpp's reference quantizer), in memory
    /// of their own, stored rows in the same order; returns max |W_new − values|.
    public func requantize(from values: UnsafePointer<Float>) throws -> Float {
        guard canRequantize else {
            throw FormatError.unsupportedTensorType(path: file.path, tensor: "a merged weight", type: type.name + " (re-quantizing it is not implemented: merge into a dequantized base)")
        }
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        let perRow = Int64(columns / type.blockSize)
        Parallel.forEachRange(rows, costPerItem: columns * 8) { r in
            for o in r {
                _ = finch_ggml_quantize(Int32(type.rawValue), values + o * columns,
                                        fresh.assumingMemoryBound(to: UInt8.self) + (rowOrder?[o] ?? o) * rowBytes, perRow)
            }
        }
        owned?.deallocate()
        owned = fresh; blocks = UnsafeRawPointer(fresh)
        return maxError(against: values, count: rows * columns)
    }
}
