import FinchCore

/// A safetensors file, memory-mapped and read lazily.
///
/// Opening parses and validates only the JSON header; tensor bytes are touched when asked for.
/// Buffers returned by ``bytes(_:)`` point into the mapping and are valid while this object lives.
///
/// Layout: 8-byte little-endian header length `N`, `N` bytes of JSON
/// (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`),
/// then the data buffer that `data_offsets` index.
public final class SafeTensorsFile: @unchecked Sendable {
    /// Path the file was opened with.
    public let path: String
    /// The header's `__metadata__` (empty when absent).
    public let metadata: [String: String]
    /// Tensor names in header order.
    public let tensorNames: [String]
    /// Tensors in header order.
    public let tensors: [SafeTensorInfo]
    /// File offset of the data buffer (8 + header length).
    public let dataOffset: Int

    private let file: MappedFile
    private let index: [String: Int]

    /// Maps and validates the file at `path`.
    /// - Throws: ``FormatError`` naming the file: `.io`, `.truncatedFile`, `.badHeader`,
    ///   `.unknownDType`, `.offsetOutOfRange`, `.dtypeSizeMismatch`, `.invalidShape`.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let header = try SafeTensorsHeader(file: file.bytes, path: path)
        metadata = header.metadata
        tensors = header.tensors
        tensorNames = header.tensors.map(\.name)
        dataOffset = header.dataOffset
        var index: [String: Int] = [:]
        index.reserveCapacity(tensors.count)
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    /// The header entry of tensor `name`, or nil.
    public func info(_ name: String) -> SafeTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// True if the file has a tensor called `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// The raw little-endian bytes of tensor `name` (no copy; valid while this object lives).
    /// - Throws: ``FormatError/missingTensor(path:name:)``.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let i = index[name] else { throw FormatError.missingTensor(path: path, name: name) }
        return bytes(of: tensors[i])
    }

    /// The raw bytes of `info` (no copy; valid while this object lives). `info` must come
    /// from this file (its range is checked; a foreign one traps).
    public func bytes(of info: SafeTensorInfo) -> UnsafeRawBufferPointer {
        guard let s = file.slice(offset: saturatingAdd(dataOffset, info.byteRange.lowerBound), count: info.byteRange.count) else {
            preconditionFailure("\(path): tensor '\(info.name)' range \(info.byteRange) is outside the file; it does not belong to this SafeTensorsFile")
        }
        return s
    }

    /// Tensor `name` converted to Float (row-major, as stored). Every dtype converts:
    /// floats widen exactly, integers round to nearest, BOOL gives 0/1.
    /// - Throws: ``FormatError/missingTensor(path:name:)``.
    public func floats(_ name: String) throws -> [Float] {
        guard let i = index[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let info = tensors[i]
        let n = info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            Self.convert(bytes(of: info), info.dtype, into: buf.baseAddress!, count: n)
            file.release(bytes(of: info))
            initialized = n
        }
    }

    /// Converts tensor `name` to Float into `out`, which must hold exactly its element count.
    /// - Throws: ``FormatError/missingTensor(path:name:)``, ``FormatError/outputSizeMismatch(path:tensor:expected:actual:)``.
    public func floats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let i = index[name] else { throw FormatError.missingTensor(path: path, name: name) }
        try floats(name, elements: 0..<tensors[i].elementCount, into: out)
    }

    /// Converts the elements `elements` of tensor `name` (row-major, as stored) to Float into `out`,
    /// which must hold exactly `elements.count`: one expert's slice of a fused expert tensor.
    /// - Throws: ``FormatError/missingTensor(path:name:)``, ``FormatError/outputSizeMismatch(path:tensor:expected:actual:)``.
    public func floats(_ name: String, elements: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let i = index[name] else { throw FormatError.missingTensor(path: path, name: name) }
        let info = tensors[i]
        precondition(elements.lowerBound >= 0 && elements.upperBound <= info.elementCount,
                     "\(path): elements \(elements) of '\(name)' are outside its \(info.elementCount)")
        guard out.count == elements.count else {
            throw FormatError.outputSizeMismatch(path: path, tensor: name, expected: elements.count, actual: out.count)
        }
        if elements.isEmpty { return }
        let size = info.dtype.byteSize
        let part = UnsafeRawBufferPointer(rebasing: bytes(of: info)[(elements.lowerBound * size)..<(elements.upperBound * size)])
        Self.convert(part, info.dtype, into: out.baseAddress!, count: elements.count)
        file.release(part)   // the source pages leave the resident set once converted
    }

    /// Parallel conversion of `count` elements.
    static func convert(_ src: UnsafeRawBufferPointer, _ dtype: SafeTensorsDType,
                        into dst: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0, let base = src.baseAddress else { return }
        let size = dtype.byteSize
        Parallel.forEachRange(count, costPerItem: 1, grain: 1 << 18) { r in
            dtype.convertToFloat(base + r.lowerBound * size, dst + r.lowerBound, count: r.count)
        }
    }
}
