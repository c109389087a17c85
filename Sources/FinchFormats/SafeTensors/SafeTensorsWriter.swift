import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files byte-for-byte like the reference implementation (the Rust
/// `safetensors` crate behind the Python package), atomically.
///
/// - Tensors are laid out by descending dtype (the reference order: U64, I64, F64, F32, U32,
///   I32, BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL), then by name, which keeps each
///   tensor aligned to its element size; the header lists them in that order.
/// - The header is compact JSON, `__metadata__` first (keys sorted; omitted when empty), padded
///   with spaces to a multiple of 8 bytes.
/// - The file is written to a temporary file in the same directory, `fsync`ed, then renamed
///   over `path`, so readers never see a partial file; the temporary is removed on failure.
public enum SafeTensorsWriter {
    /// One tensor to write: name, dtype, shape and its raw little-endian bytes.
    public struct Entry: Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        /// Row-major shape (`[]` for a scalar).
        public let shape: [Int]
        /// Raw little-endian element bytes; must be `product(shape) * dtype.byteSize` long.
        public let bytes: [UInt8]

        /// A tensor from its raw little-endian bytes.
        public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// A tensor from its raw little-endian bytes in a `Data`.
        public init(name: String, dtype: SafeTensorsDType, shape: [Int], data: Data) {
            self.init(name: name, dtype: dtype, shape: shape, bytes: [UInt8](data))
        }

        /// An F32 tensor holding `values`.
        public static func float32(name: String, shape: [Int], values: [Float]) -> Entry {
            let bytes = values.withUnsafeBytes { [UInt8]($0) }
            return Entry(name: name, dtype: .f32, shape: shape, bytes: bytes)
        }

        /// An F32 tensor holding the `values` buffer (copied once, straight into the entry's bytes).
        public static func float32(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) -> Entry {
            Entry(name: name, dtype: .f32, shape: shape, bytes: [UInt8](UnsafeRawBufferPointer(values)))
        }

        /// An F16 tensor holding `values` rounded to nearest-even.
        public static func float16(name: String, shape: [Int], values: [Float]) -> Entry {
            let bits = values.map(\.f16Bits)
            return Entry(name: name, dtype: .f16, shape: shape, bytes: bits.withUnsafeBytes { [UInt8]($0) })
        }

        /// A BF16 tensor holding `values` rounded to nearest-even.
        public static func bfloat16(name: String, shape: [Int], values: [Float]) -> Entry {
            let bits = values.map(\.bf16Bits)
            return Entry(name: name, dtype: .bf16, shape: shape, bytes: bits.withUnsafeBytes { [UInt8]($0) })
        }
    }

    /// Writes `tensors` and `metadata` to `path` atomically (see the type's documentation).
    /// - Throws: ``FormatError/invalidInput(path:reason:)`` for empty or duplicate names and bad
    ///   shapes, ``FormatError/dtypeSizeMismatch(path:tensor:expectedBytes:actualBytes:)`` when
    ///   a tensor's byte count disagrees with its shape, ``FormatError/io(path:message:)`` on I/O failure.
    public static func write(_ tensors: [Entry], metadata: [String: String] = [:], to path: String) throws {
        let header = try serializeHeader(tensors, metadata: metadata, path: path)
        let ordered = referenceOrder(tensors)
        try AtomicFile.write(to: path) { sink in
            try sink.write(header)
            for t in ordered { try sink.write(t.bytes) }
        }
    }

    /// The complete header (8-byte length + padded JSON) for `tensors`, in reference order.
    static func serializeHeader(_ tensors: [Entry], metadata: [String: String], path: String) throws -> [UInt8] {
        var names = Set<String>()
        for t in tensors {
            guard !t.name.isEmpty, t.name != "__metadata__" else {
                throw FormatError.invalidInput(path: path, reason: "invalid tensor name '\(t.name)'")
            }
            guard names.insert(t.name).inserted else {
                throw FormatError.invalidInput(path: path, reason: "tensor '\(t.name)' is given twice")
            }
            guard let count = checkedProduct(t.shape) else {
                throw FormatError.invalidInput(path: path, reason: "tensor '\(t.name)' has invalid shape \(t.shape)")
            }
            let (expected, o) = count.multipliedReportingOverflow(by: t.dtype.byteSize)
            guard !o else { throw FormatError.invalidInput(path: path, reason: "tensor '\(t.name)' shape \(t.shape) is too large") }
            guard expected == t.bytes.count else {
                throw FormatError.dtypeSizeMismatch(path: path, tensor: t.name, expectedBytes: expected, actualBytes: t.bytes.count)
            }
        }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            let keys = metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            json += keys.map { JSONValue.quoted($0) + ":" + JSONValue.quoted(metadata[$0]!) }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for t in referenceOrder(tensors) {
            if !first { json += "," }
            first = false
            let end = offset + t.bytes.count
            json += JSONValue.quoted(t.name)
            json += ":{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":["
            json += t.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8))
        var out = withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { [UInt8]($0) }
        out.append(contentsOf: bytes)
        return out
    }

    /// Entries sorted like the reference writer: dtype rank descending, then name (bytewise).
    static func referenceOrder(_ tensors: [Entry]) -> [Entry] {
        tensors.sorted { a, b in
            if a.dtype.referenceOrder != b.dtype.referenceOrder { return a.dtype.referenceOrder > b.dtype.referenceOrder }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }
}

/// Writes a file atomically: a temporary in the same directory, `fsync`, `rename`, then
/// `fsync` of the directory. The temporary is removed if anything fails.
public enum AtomicFile {
    /// Sequential writer handed to the body of ``write(to:_:)``.
    public struct Sink {
        fileprivate let fd: Int32
        fileprivate let tempPath: String
        public let path: String

        /// Writes all of `bytes`, retrying short writes and EINTR.
        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard var p = bytes.baseAddress else { return }
            var left = bytes.count
            while left > 0 {
                let n = Glibc_write(fd, p, min(left, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FormatError.io(path: path, message: "write failed: \(errnoString())")
                }
                p += n
                left -= n
            }
        }

        public func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try write($0) }
        }
    }

    /// Writes `text` (UTF-8) to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(to: path) { try $0.write(Array(text.utf8)) }
    }

    public static func write(to path: String, _ body: (Sink) throws -> Void) throws {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tempPath = (dir.isEmpty ? "" : dir + "/") + ".\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, 0o644)
        if fd < 0 { throw FormatError.io(path: path, message: "cannot create temporary file \(tempPath): \(errnoString())") }
        var ok = false
        defer {
            if !ok { unlink(tempPath) }
        }
        do {
            try body(Sink(fd: fd, tempPath: tempPath, path: path))
            if fsync(fd) != 0 { throw FormatError.io(path: path, message: "fsync failed: \(errnoString())") }
        } catch {
            close(fd)
            throw error
        }
        if close(fd) != 0 { throw FormatError.io(path: path, message: "close failed: \(errnoString())") }
        if rename(tempPath, path) != 0 {
            throw FormatError.io(path: path, message: "cannot rename \(tempPath) into place: \(errnoString())")
        }
        ok = true
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}

/// `write(2)`, named so it does not clash with the `write` methods above.
@inline(__always)
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #elseif canImport(Musl)
    return Musl.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
