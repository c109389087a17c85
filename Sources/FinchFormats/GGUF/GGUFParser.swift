/// Bounds-checked little-endian reader over a GGUF header. Every length and count read from
/// the file is checked against the bytes that remain before it is used.
struct GGUFCursor {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var pos: Int = 0

    /// Deepest array nesting accepted (guards the recursion against crafted files).
    static let maxArrayDepth = 16

    var remaining: Int { bytes.count - pos }

    /// Ensures `n` more bytes exist and returns their start offset.
    @inline(__always)
    mutating func take(_ n: Int) throws(FormatError) -> Int {
        guard n >= 0, n <= remaining else {
            let (need, o) = pos.addingReportingOverflow(n)
            throw .truncatedFile(path: path, expectedBytes: o ? Int.max : need, actualBytes: bytes.count)
        }
        let p = pos
        pos += n
        return p
    }

    @inline(__always)
    mutating func load<T: FixedWidthInteger>(_: T.Type) throws(FormatError) -> T {
        let p = try take(MemoryLayout<T>.size)
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: p, as: T.self))
    }

    /// A declared size larger than this (4 GiB) that runs past the end of the file is reported
    /// as a corrupt header rather than truncation: no single GGUF string or metadata array is
    /// that large, while garbage u64 values almost always are.
    static let implausibleBytes: UInt64 = 1 << 32

    /// A length or count stored as u64, checked against what `elementSize`-byte items the
    /// rest of the file can hold: running past the end is truncation, unless the claim is
    /// implausibly large (corrupt header).
    mutating func count(elementSize: Int, what: @autoclosure () -> String) throws(FormatError) -> Int {
        let at = pos
        let raw = try load(UInt64.self)
        let size = UInt64(max(elementSize, 1))
        let (total, o) = raw.multipliedReportingOverflow(by: size)
        if o || total > UInt64(remaining) {
            if o || total > Self.implausibleBytes || total > UInt64(Int.max - pos) {
                throw .badHeader(path: path, reason: "\(what()) at offset \(at) claims \(raw) item(s) of at least \(elementSize) byte(s), more than the file holds (\(bytes.count) bytes)")
            }
            throw .truncatedFile(path: path, expectedBytes: pos + Int(total), actualBytes: bytes.count)
        }
        return Int(raw)
    }

    mutating func string(_ what: @autoclosure () -> String) throws(FormatError) -> String {
        let n = try count(elementSize: 1, what: "\(what()) string length")
        let p = try take(n)
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + n)]), as: UTF8.self)
    }

    mutating func valueType(_ what: @autoclosure () -> String) throws(FormatError) -> GGUFValueType {
        let at = pos
        let raw = try load(UInt32.self)
        guard let t = GGUFValueType(rawValue: raw) else {
            throw .badHeader(path: path, reason: "\(what()) has unknown value type \(raw) at offset \(at)")
        }
        return t
    }

    mutating func value(of type: GGUFValueType, key: String, depth: Int = 0) throws(FormatError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try load(UInt8.self))
        case .int8: return .int8(try load(Int8.self))
        case .uint16: return .uint16(try load(UInt16.self))
        case .int16: return .int16(try load(Int16.self))
        case .uint32: return .uint32(try load(UInt32.self))
        case .int32: return .int32(try load(Int32.self))
        case .uint64: return .uint64(try load(UInt64.self))
        case .int64: return .int64(try load(Int64.self))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self)))
        case .bool: return .bool(try load(UInt8.self) != 0)  // any non-zero byte is true, as in gguf-py
        case .string: return .string(try string("metadata '\(key)'"))
        case .array:
            guard depth < Self.maxArrayDepth else {
                throw .badHeader(path: path, reason: "metadata '\(key)' nests arrays deeper than \(Self.maxArrayDepth)")
            }
            let elementType = try valueType("array element of metadata '\(key)'")
            let n = try count(elementSize: elementType.minimumEncodedSize, what: "array '\(key)'")
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(of: elementType, key: key, depth: depth + 1)) }
            return .array(items)
        }
    }
}

/// The parsed header of a GGUF file.
struct GGUFHeader {
    /// Versions this reader accepts (v1 used 32-bit counts and is obsolete).
    static let supportedVersions: [UInt32] = [2, 3]
    /// ggml's limit on tensor rank.
    static let maxDimensions = 4
    static let defaultAlignment = 32

    var version: UInt32 = 0
    var metadataKeys: [String] = []
    var metadata: [String: GGUFValue] = [:]
    var tensors: [GGUFTensorInfo] = []
    var alignment = defaultAlignment
    var dataOffset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) throws(FormatError) {
        var c = GGUFCursor(bytes: bytes, path: path)
        guard bytes.count >= 4 else {
            throw .truncatedFile(path: path, expectedBytes: 4, actualBytes: bytes.count)
        }
        let magic = Array(UnsafeRawBufferPointer(rebasing: bytes[0..<4]))
        guard magic == Array("GGUF".utf8) else {
            if FormatError.looksLikePickle(magic) { throw .pickleCheckpoint(path: path) }
            throw .badMagic(path: path, expected: "GGUF", found: magic)
        }
        c.pos = 4
        version = try c.load(UInt32.self)
        guard Self.supportedVersions.contains(version) else {
            if version & 0xffff == 0 && version != 0 {
                throw .badHeader(path: path, reason: "version field \(version) looks byte-swapped: big-endian GGUF files are not supported")
            }
            throw .unsupportedVersion(path: path, version: version, supported: Self.supportedVersions)
        }
        // Minimum encoded sizes: tensor info = name len 8 + n_dims 4 + type 4 + offset 8; KV = key len 8 + type 4 + 1.
        let tensorCount = try c.count(elementSize: 24, what: "tensor count")
        let kvCount = try c.count(elementSize: 13, what: "metadata count")

        metadataKeys.reserveCapacity(kvCount)
        for _ in 0..<kvCount {
            let key = try c.string("metadata key")
            let type = try c.valueType("metadata '\(key)'")
            let value = try c.value(of: type, key: key)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .badHeader(path: path, reason: "metadata key '\(key)' appears twice")
            }
            metadataKeys.append(key)
        }

        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a else {
                throw .badHeader(path: path, reason: "general.alignment must be a uint32, found \(a.type)")
            }
            guard v != 0, v & (v - 1) == 0 else {
                throw .badHeader(path: path, reason: "general.alignment \(v) is not a power of two")
            }
            alignment = Int(v)
        }

        struct RawInfo { let name: String; let dims: [Int]; let type: GGMLType; let offset: Int; let count: Int; let bytes: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(tensorCount)
        var names = Set<String>()
        names.reserveCapacity(tensorCount)
        var layoutSize = 0  // data section size a conforming writer produces (each tensor padded)
        for _ in 0..<tensorCount {
            let name = try c.string("tensor name")
            guard names.insert(name).inserted else {
                throw .badHeader(path: path, reason: "tensor '\(name)' appears twice")
            }
            let nDims = Int(try c.load(UInt32.self))
            guard nDims <= Self.maxDimensions else {
                throw .invalidShape(path: path, tensor: name, reason: "\(nDims) dimensions (ggml allows at most \(Self.maxDimensions))")
            }
            var dims: [Int] = []
            dims.reserveCapacity(nDims)
            for _ in 0..<nDims {
                let d = try c.load(UInt64.self)
                guard let di = Int(exactly: d), di <= Int(Int64.max) else {
                    throw .invalidShape(path: path, tensor: name, reason: "dimension \(d) is too large")
                }
                dims.append(di)
            }
            let rawType = try c.load(UInt32.self)
            let offset = try c.load(UInt64.self)
            guard let type = GGMLType(rawValue: rawType) else {
                throw .unknownTensorType(path: path, tensor: name, type: rawType)
            }
            guard let count = checkedProduct(dims) else {
                throw .invalidShape(path: path, tensor: name, reason: "element count of dimensions \(dims) overflows")
            }
            let first = dims.first ?? 1
            guard first % type.blockSize == 0 else {
                throw .invalidShape(path: path, tensor: name, reason: "row length \(first) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let (nbytes, o) = (count / type.blockSize).multipliedReportingOverflow(by: type.typeSize)
            guard !o else {
                throw .invalidShape(path: path, tensor: name, reason: "byte size of dimensions \(dims) overflows")
            }
            let rel = Int(exactly: offset) ?? Int.max  // an absurd offset fails the range check below
            guard nbytes <= Int.max - alignment else {
                throw .invalidShape(path: path, tensor: name, reason: "byte size overflows")
            }
            let padded = (nbytes + (alignment - 1)) / alignment * alignment
            let (sum, o2) = layoutSize.addingReportingOverflow(padded)
            guard !o2 else { throw .invalidShape(path: path, tensor: name, reason: "total data size overflows") }
            layoutSize = sum
            raw.append(RawInfo(name: name, dims: dims, type: type, offset: rel, count: count, bytes: nbytes))
        }

        // Tensor data starts at the next multiple of the alignment.
        let infoEnd = c.pos
        dataOffset = (infoEnd + (alignment - 1)) / alignment * alignment
        var maxEnd = dataOffset
        tensors.reserveCapacity(raw.count)
        for r in raw {
            // A tensor must lie within the data section a conforming writer lays out.
            guard r.offset <= layoutSize, r.bytes <= layoutSize - r.offset else {
                let begin = saturatingAdd(dataOffset, r.offset)
                throw .offsetOutOfRange(path: path, tensor: r.name, begin: begin, end: saturatingAdd(begin, r.bytes),
                                        limit: saturatingAdd(dataOffset, layoutSize))
            }
            let begin = dataOffset + r.offset
            maxEnd = max(maxEnd, begin + r.bytes)
            tensors.append(GGUFTensorInfo(name: r.name, type: r.type, dimensions: r.dims, offset: begin, byteCount: r.bytes))
        }
        if !tensors.isEmpty && maxEnd > bytes.count {
            throw .truncatedFile(path: path, expectedBytes: maxEnd, actualBytes: bytes.count)
        }
    }
}
