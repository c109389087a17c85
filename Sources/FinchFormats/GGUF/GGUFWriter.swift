import CFinchKernels
import FinchCore

/// Writes GGUF files (version 3) as llama.cpp reads them: `"GGUF"`, version, tensor and metadata
/// counts, the metadata, the tensor infos (dimensions in ggml order, type, offset), zero padding
/// to the alignment, then each tensor's data at an aligned offset.
///
/// Tensors are produced one at a time by their `fill` closures while the file is written, so an
/// export holds one tensor's data in memory, not the model's. The file appears atomically (a
/// temporary in the same directory, fsynced, renamed into place): a failed export leaves no
/// partial file and an existing one untouched.
public enum GGUFWriter {
    /// One tensor to write: name, type, ggml dimensions (`dimensions[0]` the row length) and a
    /// closure that fills exactly `byteCount` bytes.
    public struct Tensor {
        public var name: String
        public var type: GGMLType
        public var dimensions: [Int]
        public var fill: (UnsafeMutableRawBufferPointer) throws -> Void

        public init(name: String, type: GGMLType, dimensions: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
            self.name = name; self.type = type; self.dimensions = dimensions; self.fill = fill
        }

        /// Bytes of data: elements / block size × block bytes.
        public var byteCount: Int { dimensions.reduce(1, *) / type.blockSize * type.typeSize }
    }

    /// Writes `metadata` (in order) and `tensors` to `path`.
    /// - Throws: ``FormatError/invalidInput(path:reason:)`` for a tensor whose rows do not hold
    ///   whole blocks of its type, duplicate names, or an empty metadata array;
    ///   ``FormatError/io(path:message:)`` when writing fails.
    public static func write(to path: String, metadata: [(key: String, value: GGUFValue)], tensors: [Tensor],
                             alignment: Int = 32) throws {
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else {
                throw FormatError.invalidInput(path: path, reason: "tensor '\(t.name)' is written twice")
            }
            guard let ne0 = t.dimensions.first, ne0 % t.type.blockSize == 0, t.dimensions.allSatisfy({ $0 > 0 }) else {
                throw FormatError.invalidInput(path: path, reason: "tensor '\(t.name)' with dimensions \(t.dimensions) cannot be stored as \(t.type.name): its rows must hold whole blocks of \(t.type.blockSize)")
            }
        }
        var header = ByteWriter()
        header.append(Array("GGUF".utf8))
        header.u32(3)
        header.u64(UInt64(tensors.count))
        var meta = metadata
        if alignment != 32 { meta.append(("general.alignment", .uint32(UInt32(alignment)))) }
        header.u64(UInt64(meta.count))
        for (k, v) in meta {
            header.string(k)
            try header.value(v, key: k, path: path)
        }
        var offset = 0
        for t in tensors {
            header.string(t.name)
            header.u32(UInt32(t.dimensions.count))
            for d in t.dimensions { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
            offset += padded(t.byteCount, alignment)
        }
        header.append([UInt8](repeating: 0, count: padded(header.bytes.count, alignment) - header.bytes.count))
        try AtomicFile.write(to: path) { sink in
            try sink.write(header.bytes)
            for t in tensors {
                let n = t.byteCount, total = padded(n, alignment)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 64)
                defer { buffer.deallocate() }
                try t.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
                if total > n { UnsafeMutableRawBufferPointer(rebasing: buffer[n..<total]).initializeMemory(as: UInt8.self, repeating: 0) }
                try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<total]))
            }
        }
    }

    static func padded(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    struct ByteWriter {
        var bytes: [UInt8] = []
        mutating func append(_ b: [UInt8]) { bytes += b }
        mutating func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u32(_ v: UInt32) { le(v) }
        mutating func u64(_ v: UInt64) { le(v) }
        mutating func string(_ s: String) { let u = Array(s.utf8); u64(UInt64(u.count)); bytes += u }

        mutating func value(_ v: GGUFValue, key: String, path: String) throws {
            u32(v.type.rawValue)
            try payload(v, key: key, path: path)
        }

        mutating func payload(_ v: GGUFValue, key: String, path: String) throws {
            switch v {
            case .uint8(let x): le(x)
            case .int8(let x): le(x)
            case .uint16(let x): le(x)
            case .int16(let x): le(x)
            case .uint32(let x): le(x)
            case .int32(let x): le(x)
            case .uint64(let x): le(x)
            case .int64(let x): le(x)
            case .float32(let x): le(x.bitPattern)
            case .float64(let x): le(x.bitPattern)
            case .bool(let x): bytes.append(x ? 1 : 0)
            case .string(let s): string(s)
            case .array(let items):
                guard let first = items.first else {
                    throw FormatError.invalidInput(path: path, reason: "metadata key '\(key)' is an empty array, whose element type GGUF cannot record")
                }
                guard items.allSatisfy({ $0.type == first.type }) else {
                    throw FormatError.invalidInput(path: path, reason: "metadata key '\(key)' mixes element types; GGUF arrays are homogeneous")
                }
                u32(first.type.rawValue)
                u64(UInt64(items.count))
                for item in items { try payload(item, key: key, path: path) }
            }
        }
    }
}

/// Converts float32 values to the ggml types an export writes: F32, F16, BF16 (round to nearest
/// even, as ggml and gguf-py convert), and Q8_0, Q4_0, Q5_0, Q4_K, Q6_K with llama.cpp's
/// reference quantizers (the bytes llama-quantize writes without an importance matrix).
public enum GGMLQuantizer {
    /// Types ``quantize(_:count:to:into:)`` writes.
    public static let writableTypes: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K]

    /// Writes `count` values of `x` as `type` into `out` (exactly `count / blockSize × typeSize`
    /// bytes), on all cores. `count` must be a multiple of the type's block size.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, to type: GGMLType, into out: UnsafeMutableRawBufferPointer) {
        precondition(writableTypes.contains(type), "GGMLQuantizer cannot write \(type.name)")
        precondition(count % type.blockSize == 0 && out.count == count / type.blockSize * type.typeSize,
                     "\(count) values do not fill \(out.count) bytes of \(type.name)")
        guard count > 0, let base = out.baseAddress else { return }
        switch type {
        case .f32:
            base.copyMemory(from: x, byteCount: count * 4)
        case .f16:
            let h = base.bindMemory(to: Float16.self, capacity: count)
            Parallel.forEachRange(count, costPerItem: 1, grain: 1 << 16) { r in for i in r { h[i] = Float16(x[i]) } }
        case .bf16:
            let b = base.bindMemory(to: BF16Bits.self, capacity: count)
            Parallel.forEachRange(count, costPerItem: 1, grain: 1 << 16) { r in
                BFloat16.convert(x + r.lowerBound, to: b + r.lowerBound, count: r.count)
            }
        default:
            let bs = type.blockSize, ts = type.typeSize, blocks = count / bs
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            Parallel.forEachRange(blocks, costPerItem: bs * 20, grain: 1 << 16) { r in
                _ = finch_ggml_quantize(Int32(type.rawValue), x + r.lowerBound * bs, bytes + r.lowerBound * ts, Int64(r.count))
            }
        }
    }
}
