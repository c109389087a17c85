/// Parsing and validation of a safetensors header, following the reference implementation
/// (`safetensors` crate `validate`): sane length, valid JSON object, known dtypes, offsets
/// inside the buffer, sizes matching dtype × shape, tensors contiguous and covering the buffer.
struct SafeTensorsHeader {
    /// Largest header accepted (the reference implementation's limit).
    static let maxHeaderBytes = 100_000_000

    let headerLength: Int
    let tensors: [SafeTensorInfo]   // header order
    let metadata: [String: String]

    /// Offset of the data buffer in the file.
    var dataOffset: Int { 8 + headerLength }

    init(file: UnsafeRawBufferPointer, path: String) throws(FormatError) {
        let size = file.count
        guard size >= 8 else { throw .truncatedFile(path: path, expectedBytes: 8, actualBytes: size) }
        let n64 = file.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n64 <= UInt64(Self.maxHeaderBytes) else {
            throw .badHeader(path: path, reason: "header length \(n64) exceeds the \(Self.maxHeaderBytes)-byte limit (not a safetensors file?)")
        }
        let n = Int(n64)
        guard n <= size - 8 else { throw .truncatedFile(path: path, expectedBytes: 8 + n, actualBytes: size) }
        guard n >= 2 else { throw .badHeader(path: path, reason: "header length \(n) is too small for a JSON object (not a safetensors file?)") }
        headerLength = n
        let headerBytes = UnsafeRawBufferPointer(rebasing: file[8..<(8 + n)])
        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes)
        } catch {
            throw .badHeader(path: path, reason: "invalid JSON at header byte \(error.offset): \(error.message)")
        }
        guard let members = json.objectValue else {
            throw .badHeader(path: path, reason: "header is \(json.kindName), expected an object (not a safetensors file?)")
        }

        let bufferSize = size - 8 - n
        var metadata: [String: String] = [:]
        var tensors: [SafeTensorInfo] = []
        tensors.reserveCapacity(members.count)
        var seen = Set<String>()
        for member in members {
            if member.key == "__metadata__" {
                guard let entries = member.value.objectValue else {
                    throw .badHeader(path: path, reason: "__metadata__ is \(member.value.kindName), expected an object of strings")
                }
                for e in entries {
                    guard let s = e.value.stringValue else {
                        throw .badHeader(path: path, reason: "__metadata__ value for '\(e.key)' is \(e.value.kindName), expected a string")
                    }
                    metadata[e.key] = s
                }
                continue
            }
            guard seen.insert(member.key).inserted else {
                throw .badHeader(path: path, reason: "tensor '\(member.key)' is listed twice")
            }
            tensors.append(try Self.parseTensor(name: member.key, member.value, path: path, bufferSize: bufferSize))
        }

        // Contiguity: sorted by offsets, each tensor starts where the previous ended, the last
        // ends at the end of the file.
        let sorted = tensors.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
        }
        var end = 0
        for t in sorted {
            if t.byteRange.lowerBound != end {
                let what = t.byteRange.lowerBound < end ? "overlaps the previous tensor" : "leaves a gap after the previous tensor"
                throw .badHeader(path: path, reason: "tensor '\(t.name)' data starts at \(t.byteRange.lowerBound) but the previous tensor ends at \(end) (\(what))")
            }
            end = t.byteRange.upperBound
        }
        if end != bufferSize {
            throw .badHeader(path: path, reason: "tensors cover \(end) bytes but the data buffer has \(bufferSize) (\(bufferSize - end) unaccounted bytes)")
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func parseTensor(name: String, _ v: JSONValue, path: String, bufferSize: Int) throws(FormatError) -> SafeTensorInfo {
        guard v.objectValue != nil else {
            throw .badHeader(path: path, reason: "entry for tensor '\(name)' is \(v.kindName), expected an object")
        }
        guard let dtypeText = v["dtype"]?.stringValue else {
            throw .badHeader(path: path, reason: "tensor '\(name)' has no string \"dtype\"")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeText) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeText)
        }
        guard let shapeItems = v["shape"]?.arrayValue else {
            throw .badHeader(path: path, reason: "tensor '\(name)' has no \"shape\" array")
        }
        var shape: [Int] = []
        shape.reserveCapacity(shapeItems.count)
        for item in shapeItems {
            guard let d = item.intValue, d >= 0 else {
                throw .invalidShape(path: path, tensor: name, reason: "dimension \(item) is not a non-negative integer")
            }
            shape.append(d)
        }
        guard let offsets = v["data_offsets"]?.arrayValue, offsets.count == 2,
              let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= 0 else {
            throw .badHeader(path: path, reason: "tensor '\(name)' needs \"data_offsets\": [begin, end] with non-negative integers")
        }
        guard begin <= end else {
            throw .badHeader(path: path, reason: "tensor '\(name)' data_offsets [\(begin), \(end)] end before they begin")
        }
        guard end <= bufferSize else {
            throw .offsetOutOfRange(path: path, tensor: name, begin: begin, end: end, limit: bufferSize)
        }
        guard let count = checkedProduct(shape) else {
            throw .invalidShape(path: path, tensor: name, reason: "element count of shape \(shape) overflows")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else {
            throw .invalidShape(path: path, tensor: name, reason: "byte size of shape \(shape) overflows")
        }
        guard end - begin == bytes else {
            throw .dtypeSizeMismatch(path: path, tensor: name, expectedBytes: bytes, actualBytes: end - begin)
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
    }
}
