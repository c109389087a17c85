import FinchCore

/// A GGUF file (llama.cpp's model format), versions 2 and 3, memory-mapped and read lazily.
///
/// Opening parses the header — magic `GGUF`, version, tensor and metadata counts, metadata
/// key/values, tensor infos — and validates every length, count, shape and data range against
/// the file size. Tensor data is read only when asked for, straight from the mapping.
///
/// Layout (little-endian): `"GGUF"`, u32 version, u64 tensor count, u64 metadata count,
/// metadata (u64-length key, u32 type, value), tensor infos (u64-length name, u32 n_dims,
/// u64 × n_dims dims, u32 ggml type, u64 offset), padding to `general.alignment` (default 32),
/// then the tensor data, each tensor at `data start + offset`.
public final class GGUFFile: @unchecked Sendable {
    /// Path the file was opened with.
    public let path: String
    /// Format version (2 or 3).
    public let version: UInt32
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Metadata by key.
    public let metadata: [String: GGUFValue]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    /// Alignment of the data section and tensors (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute file offset where tensor data begins.
    public let dataOffset: Int

    private let file: MappedFile
    private let index: [String: Int]

    /// Maps and parses the file at `path`.
    /// - Throws: ``FormatError`` naming the file: `.io`, `.badMagic`, `.unsupportedVersion`,
    ///   `.truncatedFile`, `.badHeader`, `.unknownTensorType`, `.invalidShape`, `.offsetOutOfRange`.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let h = try GGUFHeader(bytes: file.bytes, path: path)
        version = h.version
        metadataKeys = h.metadataKeys
        metadata = h.metadata
        tensors = h.tensors
        alignment = h.alignment
        dataOffset = h.dataOffset
        var index: [String: Int] = [:]
        index.reserveCapacity(tensors.count)
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    /// Size of the file in bytes.
    public var fileSize: Int { file.count }

    /// The tensor called `named`, or nil.
    public func tensor(named: String) -> GGUFTensorInfo? {
        index[named].map { tensors[$0] }
    }

    /// The raw stored bytes of `t` (no copy; valid while this object lives).
    /// `t` must come from this file (its range is checked; a foreign one traps).
    public func rawBytes(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        guard let s = file.slice(offset: t.offset, count: t.byteCount) else {
            preconditionFailure("\(path): tensor '\(t.name)' range \(t.offset)+\(t.byteCount) is outside the file; it does not belong to this GGUFFile")
        }
        return s
    }

    /// `t` converted to Float: `elementCount` values, row-major with ne0 (``GGUFTensorInfo/dimensions``[0])
    /// fastest. Bit-identical to gguf-py's `gguf.quants.dequantize`.
    /// - Throws: ``FormatError/unsupportedTensorType(path:tensor:type:)`` for types without a dequantizer.
    public func dequantize(_ t: GGUFTensorInfo) throws -> [Float] {
        let n = t.elementCount
        return try [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            try dequantize(t, into: buf)
            initialized = n
        }
    }

    /// Converts `t` to Float into `out`, which must hold exactly `t.elementCount` values.
    /// Large tensors are converted on all cores.
    /// - Throws: ``FormatError/outputSizeMismatch(path:tensor:expected:actual:)``,
    ///   ``FormatError/unsupportedTensorType(path:tensor:type:)``,
    ///   ``FormatError/offsetOutOfRange(path:tensor:begin:end:limit:)`` for a tensor info not from this file.
    public func dequantize(_ t: GGUFTensorInfo, into out: UnsafeMutableBufferPointer<Float>) throws {
        let n = t.elementCount
        guard out.count == n else {
            throw FormatError.outputSizeMismatch(path: path, tensor: t.name, expected: n, actual: out.count)
        }
        guard let kernel = GGMLDequantizer.kernel(for: t.type) else {
            throw FormatError.unsupportedTensorType(path: path, tensor: t.name, type: t.type.name)
        }
        let blocks = n / t.type.blockSize
        let (expectedBytes, overflow) = blocks.multipliedReportingOverflow(by: t.type.typeSize)
        guard n % t.type.blockSize == 0, !overflow, expectedBytes == t.byteCount,
              let src = file.slice(offset: t.offset, count: t.byteCount) else {
            throw FormatError.offsetOutOfRange(path: path, tensor: t.name, begin: t.offset, end: t.offset &+ t.byteCount, limit: file.count)
        }
        guard n > 0, let base = src.baseAddress, let dst = out.baseAddress else { return }
        let typeSize = t.type.typeSize, blockSize = t.type.blockSize
        Parallel.forEachRange(blocks, costPerItem: 1, grain: max(1, (1 << 16) / blockSize)) { r in
            kernel(base + r.lowerBound * typeSize, dst + r.lowerBound * blockSize, r.count)
        }
        file.release(src)   // the source pages leave the resident set once converted
    }
}
