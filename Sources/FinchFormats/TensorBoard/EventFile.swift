import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One record of a TensorBoard event file: TensorFlow's `Event` protocol buffer
/// (tensorflow/core/util/event.proto) with what Finch writes: the file version, a summary of scalars
/// and texts, or a session start (after which TensorBoard drops what an earlier, killed run logged at
/// this step and later).
public struct TensorBoardEvent: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// `file_version` ("brain.Event:2"), the first record of every file.
        case fileVersion(String)
        case summary([TensorBoardValue])
        /// `session_log { status: START }`.
        case sessionStart
    }
    public var wallTime: Double
    public var step: Int64
    public var content: Content

    public init(wallTime: Double, step: Int64, content: Content) {
        self.wallTime = wallTime; self.step = step; self.content = content
    }
}

/// A value of a `Summary` (tensorflow/core/framework/summary.proto).
public enum TensorBoardValue: Sendable, Equatable {
    /// `simple_value`: what TensorBoard's scalar dashboard and `EventAccumulator.Scalars` read.
    case scalar(tag: String, value: Float)
    /// A text summary as the text plugin writes it (`text_pb`): a scalar DT_STRING tensor with
    /// plugin "text"; markdown in TensorBoard's text dashboard.
    case text(tag: String, text: String)

    public var tag: String {
        switch self { case .scalar(let t, _), .text(let t, _): return t }
    }
}

// MARK: - Protocol buffer encoding (the wire format; fields written in number order, defaults omitted, as protobuf does)

private struct ProtoWriter {
    var bytes: [UInt8] = []
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }
    mutating func int64(_ field: Int, _ v: Int64) { if v != 0 { key(field, 0); varint(UInt64(bitPattern: v)) } }
    mutating func double(_ field: Int, _ v: Double) {
        guard v.bitPattern != 0 else { return }
        key(field, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }
    /// A float of a oneof (`simple_value`): written even when zero, since a oneof's member has presence.
    mutating func float(_ field: Int, _ v: Float) {
        key(field, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }
    /// A length-delimited field written even when empty (a set message field, a repeated element).
    mutating func delimited(_ field: Int, _ payload: [UInt8]) { key(field, 2); varint(UInt64(payload.count)); bytes += payload }
    mutating func string(_ field: Int, _ s: String) { if !s.isEmpty { delimited(field, Array(s.utf8)) } }
    mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var m = ProtoWriter(); build(&m); delimited(field, m.bytes)
    }
}

extension TensorBoardEvent {
    /// The serialized `Event`.
    public var serialized: [UInt8] {
        var w = ProtoWriter()
        w.double(1, wallTime)
        w.int64(2, step)
        switch content {
        case .fileVersion(let v): w.string(3, v)
        case .summary(let values):
            w.message(5) { s in
                for v in values {
                    s.message(1) { m in
                        m.string(1, v.tag)
                        switch v {
                        case .scalar(_, let x): m.float(2, x)
                        case .text(_, let text):
                            m.message(8) { t in                       // TensorProto
                                t.key(1, 0); t.varint(7)              // dtype DT_STRING
                                t.message(2) { _ in }                 // tensor_shape: a scalar
                                t.delimited(8, Array(text.utf8))      // string_val
                            }
                            m.message(9) { md in md.message(1) { p in p.string(1, "text") } }   // metadata.plugin_data
                        }
                    }
                }
            }
        case .sessionStart: w.message(7) { l in l.key(1, 0); l.varint(1) }   // SessionLog.status = START
        }
        return w.bytes
    }

    /// Reads a serialized `Event`: what Finch writes, other fields and values skipped.
    /// - Throws: ``FormatError/badHeader(path:reason:)`` for malformed bytes.
    public init(serialized bytes: [UInt8], path: String = "") throws {
        var r = ProtoReader(bytes: bytes[...], path: path)
        wallTime = 0; step = 0; content = .summary([])
        var values: [TensorBoardValue] = []
        while let (field, wire) = try r.key() {
            switch (field, wire) {
            case (1, 1): wallTime = Double(bitPattern: try r.fixed64())
            case (2, 0): step = Int64(bitPattern: try r.varint())
            case (3, 2): content = .fileVersion(String(decoding: try r.delimited(), as: UTF8.self))
            case (5, 2):
                var s = ProtoReader(bytes: try r.delimited(), path: path)
                while let (f, w) = try s.key() {
                    guard f == 1, w == 2 else { try s.skip(w); continue }
                    if let v = try Self.value(try s.delimited(), path: path) { values.append(v) }
                }
                content = .summary(values)
            case (7, 2):
                var l = ProtoReader(bytes: try r.delimited(), path: path)
                var status: UInt64 = 0
                while let (f, w) = try l.key() { if f == 1, w == 0 { status = try l.varint() } else { try l.skip(w) } }
                if status == 1 { content = .sessionStart }
            default: try r.skip(wire)
            }
        }
    }

    private static func value(_ bytes: ArraySlice<UInt8>, path: String) throws -> TensorBoardValue? {
        var r = ProtoReader(bytes: bytes, path: path)
        var tag = "", simple: Float?, strings: [String] = []
        while let (f, w) = try r.key() {
            switch (f, w) {
            case (1, 2): tag = String(decoding: try r.delimited(), as: UTF8.self)
            case (2, 5): simple = Float(bitPattern: UInt32(truncatingIfNeeded: try r.fixed32()))
            case (8, 2):
                var t = ProtoReader(bytes: try r.delimited(), path: path)
                while let (tf, tw) = try t.key() {
                    if tf == 8, tw == 2 { strings.append(String(decoding: try t.delimited(), as: UTF8.self)) } else { try t.skip(tw) }
                }
            default: try r.skip(w)
            }
        }
        if let simple { return .scalar(tag: tag, value: simple) }
        if let s = strings.first { return .text(tag: tag, text: s) }
        return nil
    }
}

private struct ProtoReader {
    var bytes: ArraySlice<UInt8>
    let path: String
    func bad(_ why: String) -> FormatError { .badHeader(path: path, reason: "event record: \(why)") }
    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while let b = bytes.popFirst() {
            guard shift < 64 else { throw bad("a varint longer than 10 bytes") }
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        throw bad("a varint cut short")
    }
    mutating func key() throws -> (Int, UInt64)? {
        guard !bytes.isEmpty else { return nil }
        let k = try varint()
        return (Int(truncatingIfNeeded: k >> 3), k & 7)
    }
    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count else { throw bad("a field of \(n) bytes where \(bytes.count) are left") }
        let out = bytes.prefix(n); bytes = bytes.dropFirst(n); return out
    }
    mutating func fixed64() throws -> UInt64 { try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func fixed32() throws -> UInt64 { try take(4).reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func delimited() throws -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(Int.max) else { throw bad("a length of \(n)") }
        return try take(Int(n))
    }
    mutating func skip(_ wire: UInt64) throws {
        switch wire {
        case 0: _ = try varint()
        case 1: _ = try take(8)
        case 2: _ = try delimited()
        case 5: _ = try take(4)
        default: throw bad("wire type \(wire), which proto3 does not use")
        }
    }
}

// MARK: - TFRecord framing

/// TFRecord framing: each record is its length (UInt64, little-endian), the masked CRC-32C of those
/// 8 bytes, the data, and the masked CRC-32C of the data.
public enum TFRecord {
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { out += $0 }
        withUnsafeBytes(of: CRC32C.masked(out).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        return out
    }

    /// The records of `bytes`, each checksum checked. A last record cut short (a writer killed
    /// mid-write, or still writing) ends the list as TensorBoard treats it: not an error.
    /// - Throws: ``FormatError/badHeader(path:reason:)`` naming the record's offset when a checksum is wrong.
    public static func records(_ bytes: [UInt8], path: String) throws -> [[UInt8]] {
        var out: [[UInt8]] = [], at = 0
        func u32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[i + $1]) << (8 * $1) } }
        while bytes.count - at >= 12 {
            let n = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
            guard u32(at + 8) == CRC32C.masked(bytes[at..<(at + 8)]) else {
                throw FormatError.badHeader(path: path, reason: "the length of the record at byte \(at) fails its checksum; the file is corrupt")
            }
            guard n <= UInt64(bytes.count - at - 16) else { break }
            let data = Array(bytes[(at + 12)..<(at + 12 + Int(n))])
            guard u32(at + 12 + Int(n)) == CRC32C.masked(data) else {
                throw FormatError.badHeader(path: path, reason: "the record at byte \(at) fails its checksum; the file is corrupt")
            }
            out.append(data)
            at += 16 + Int(n)
        }
        return out
    }
}

// MARK: - Files

/// Appends events to a new TensorBoard event file in `directory`
/// (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`, the name TensorBoard looks for), the file-version
/// record first. Each `write` goes to the file at once (an append; TensorBoard follows a file as it grows).
public final class TensorBoardEventWriter: @unchecked Sendable {
    public let path: String
    private let handle: FileHandle
    private let lock = NSLock()

    public init(directory: String, wallTime: Double = Date().timeIntervalSince1970) throws {
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FormatError.io(path: directory, message: "cannot create the TensorBoard log directory: \(error.localizedDescription)")
        }
        let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        var n = 0, file: String
        repeat {
            file = (directory as NSString).appendingPathComponent("events.out.tfevents.\(Int(wallTime)).\(host.isEmpty ? "localhost" : host).\(getpid()).\(n)")
            n += 1
        } while fm.fileExists(atPath: file)
        guard fm.createFile(atPath: file, contents: nil), let h = FileHandle(forWritingAtPath: file) else {
            throw FormatError.io(path: file, message: "cannot create the TensorBoard event file")
        }
        path = file; handle = h
        try write(TensorBoardEvent(wallTime: wallTime, step: 0, content: .fileVersion("brain.Event:2")))
    }

    deinit { try? handle.close() }

    public func write(_ event: TensorBoardEvent) throws {
        lock.lock(); defer { lock.unlock() }
        do { try handle.write(contentsOf: TFRecord.frame(event.serialized)) } catch {
            throw FormatError.io(path: path, message: "cannot append to the event file: \(error.localizedDescription)")
        }
    }

    /// Every event of an event file, in order.
    public static func read(_ path: String) throws -> [TensorBoardEvent] {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError.io(path: path, message: "cannot read the event file") }
        return try TFRecord.records(Array(data), path: path).map { try TensorBoardEvent(serialized: $0, path: path) }
    }
}
