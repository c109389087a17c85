import FinchFormats
import Foundation

/// Reads data files: raw text, JSON lines, or one JSON array of records, keeping the line of
/// every record for error messages.
///
/// `.json` and `.jsonl` are both accepted in either layout: a file whose first non-blank
/// character is `[` is one JSON array, anything else is JSON lines (one object per line,
/// blank lines skipped). A UTF-8 byte-order mark is skipped. JSON is read leniently
/// (Python's `NaN` / `Infinity`, invalid UTF-8 repaired).
public enum DataFileReader {
    /// Throws ``DataError/fileNotFound(path:)`` unless `path` is a readable file.
    public static func requireFile(_ path: String) throws(DataError) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
              FileManager.default.isReadableFile(atPath: path) else {
            throw .fileNotFound(path: path)
        }
    }

    /// The file's bytes, without a UTF-8 byte-order mark.
    static func bytes(path: String) throws(DataError) -> [UInt8] {
        try requireFile(path)
        guard let data = FileManager.default.contents(atPath: path) else { throw .fileNotFound(path: path) }
        var b = [UInt8](data)
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { b.removeFirst(3) }
        return b
    }

    /// The file's text.
    static func text(path: String) throws(DataError) -> String {
        String(decoding: try bytes(path: path), as: UTF8.self)
    }

    /// Whether the bytes hold one JSON array (first non-blank byte `[`).
    static func isJSONArray(_ bytes: [UInt8]) -> Bool {
        bytes.first(where: { !isBlank($0) }) == UInt8(ascii: "[")
    }

    /// Every record of a JSON-lines or JSON-array file; each must be an object.
    /// - Parameter limit: stop after this many records (format detection reads one).
    public static func records(path: String, limit: Int = .max) throws(DataError) -> [DataRecord] {
        let b = try bytes(path: path)
        let records = isJSONArray(b) ? try arrayRecords(b, path: path) : try lineRecords(b, path: path, limit: limit)
        for r in records.prefix(limit) where r.value.objectValue == nil {
            throw r.malformed(path, "expected a JSON object, found \(r.value.kindName)")
        }
        return Array(records.prefix(limit))
    }

    /// One record per non-blank line.
    static func lineRecords(_ b: [UInt8], path: String, limit: Int = .max) throws(DataError) -> [DataRecord] {
        var out: [DataRecord] = []
        var start = 0
        var line = 1
        while start < b.count && out.count < limit {
            var end = start
            while end < b.count && b[end] != UInt8(ascii: "\n") { end += 1 }
            let slice = Array(b[start..<end])
            if slice.contains(where: { !isBlank($0) }) {
                do {
                    out.append(DataRecord(value: try JSONParser.parse(slice, options: .lenient), line: line, arrayIndex: nil))
                } catch {
                    let column = error.offset + 1
                    throw .malformed(path: path, line: line,
                                     reason: "invalid JSON at column \(column): \(error.message) "
                                        + "(JSON lines need one complete object per line)")
                }
            }
            start = end + 1
            line += 1
        }
        return out
    }

    /// The items of one top-level JSON array, each with the line it starts on.
    static func arrayRecords(_ b: [UInt8], path: String) throws(DataError) -> [DataRecord] {
        let doc: JSONValue
        do {
            doc = try JSONParser.parse(b, options: .lenient)
        } catch {
            let (line, column) = lineAndColumn(offset: error.offset, in: b)
            throw .malformed(path: path, line: line, reason: "invalid JSON at column \(column): \(error.message)")
        }
        guard let items = doc.arrayValue else {
            throw .malformed(path: path, line: 1, reason: "expected a JSON array of records, found \(doc.kindName)")
        }
        let starts = itemOffsets(b)
        var lines: [Int] = []
        lines.reserveCapacity(starts.count)
        var line = 1, pos = 0
        for s in starts {
            while pos < s { if b[pos] == UInt8(ascii: "\n") { line += 1 }; pos += 1 }
            lines.append(line)
        }
        return items.enumerated().map { i, v in
            DataRecord(value: v, line: i < lines.count ? lines[i] : 1, arrayIndex: i)
        }
    }

    /// Byte offsets where the items of the top-level array start. The document must already
    /// have parsed, so strings and nesting are well formed.
    static func itemOffsets(_ b: [UInt8]) -> [Int] {
        var out: [Int] = []
        var depth = 0
        var inString = false, escaped = false
        var expectItem = false
        for (i, c) in b.enumerated() {
            if inString {
                if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
                continue
            }
            if isBlank(c) { continue }
            if expectItem && depth == 1 && c != UInt8(ascii: "]") { out.append(i); expectItem = false }
            switch c {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth == 1 { expectItem = true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            case UInt8(ascii: ","): if depth == 1 { expectItem = true }
            default: break
            }
        }
        return out
    }

    /// 1-based line and column (in bytes) of a byte offset.
    static func lineAndColumn(offset: Int, in b: [UInt8]) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        for i in 0..<min(offset, b.count) where b[i] == UInt8(ascii: "\n") {
            line += 1
            lineStart = i + 1
        }
        return (line, offset - lineStart + 1)
    }

    static func isBlank(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
    }
}
