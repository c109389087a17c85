/// A strict RFC 8259 JSON parser over raw bytes, keeping object members in order.
///
/// Used for safetensors headers and `model.safetensors.index.json`. It rejects trailing
/// commas, leading zeros, control characters in strings, invalid UTF-8 and nesting deeper
/// than `maxDepth`; trailing whitespace after the value is allowed (safetensors pads with spaces).
struct JSONParser {
    struct Failure: Error {
        let message: String
        let offset: Int
    }

    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private let maxDepth: Int

    /// Parses one complete JSON document from `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws(Failure) -> JSONValue {
        var p = JSONParser(bytes: bytes, maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.pos != bytes.count { throw p.fail("unexpected data after the JSON value") }
        return v
    }

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private func fail(_ message: String) -> Failure { Failure(message: message, offset: pos) }

    private var atEnd: Bool { pos >= bytes.count }
    private func peek() -> UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 { pos += 1 } else { break }
        }
    }

    private mutating func expect(_ literal: StaticString) throws(Failure) {
        let n = literal.utf8CodeUnitCount
        guard bytes.count - pos >= n else { throw fail("unexpected end of input") }
        let lit = UnsafeRawBufferPointer(start: literal.utf8Start, count: n)
        for i in 0..<n where bytes[pos + i] != lit[i] { throw fail("invalid literal") }
        pos += n
    }

    private mutating func parseValue(depth: Int) throws(Failure) -> JSONValue {
        guard let c = peek() else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    private mutating func parseObject(depth: Int) throws(Failure) -> JSONValue {
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth)") }
        pos += 1
        var members: [JSONMember] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append(JSONMember(key: key, value: value))
            skipWhitespace()
            guard let c = peek() else { throw fail("unexpected end of input in object") }
            pos += 1
            if c == UInt8(ascii: "}") { return .object(members) }
            if c != UInt8(ascii: ",") { pos -= 1; throw fail("expected ',' or '}'") }
        }
    }

    private mutating func parseArray(depth: Int) throws(Failure) -> JSONValue {
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth)") }
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard let c = peek() else { throw fail("unexpected end of input in array") }
            pos += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            if c != UInt8(ascii: ",") { pos -= 1; throw fail("expected ',' or ']'") }
        }
    }

    private mutating func parseNumber() throws(Failure) -> JSONValue {
        let start = pos
        if peek() == UInt8(ascii: "-") { pos += 1 }
        guard let first = peek(), isDigit(first) else { throw fail("invalid number") }
        if first == UInt8(ascii: "0") {
            pos += 1
            if let c = peek(), isDigit(c) { throw fail("leading zero in number") }
        } else {
            while let c = peek(), isDigit(c) { pos += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            pos += 1
            guard let c = peek(), isDigit(c) else { throw fail("invalid fraction") }
            while let c = peek(), isDigit(c) { pos += 1 }
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            pos += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { pos += 1 }
            guard let c = peek(), isDigit(c) else { throw fail("invalid exponent") }
            while let c = peek(), isDigit(c) { pos += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        return .number(text)
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    private mutating func parseHex4() throws(Failure) -> UInt32 {
        guard bytes.count - pos >= 4 else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let h = hexValue(bytes[pos]) else { throw fail("invalid \\u escape") }
            v = v << 4 | h
            pos += 1
        }
        return v
    }

    private mutating func parseString() throws(Failure) -> String {
        pos += 1  // opening quote
        let start = pos
        // Fast path: no escapes.
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
                pos += 1
                guard let s = validatedUTF8String(raw) else {
                    throw Failure(message: "invalid UTF-8 in string", offset: start)
                }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            pos += 1
        }
        // Slow path with escapes.
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { pos -= 1; throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5c)
            case UInt8(ascii: "/"): out.append(0x2f)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if code >= 0xd800 && code < 0xdc00 {
                    guard bytes.count - pos >= 6, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    pos += 2
                    let low = try parseHex4()
                    guard low >= 0xdc00 && low < 0xe000 else { throw fail("unpaired surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
                } else if code >= 0xdc00 && code < 0xe000 {
                    throw fail("unpaired surrogate in \\u escape")
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                pos -= 1
                throw fail("invalid escape")
            }
        }
        let decoded = out.withUnsafeBytes { validatedUTF8String($0) }
        guard let s = decoded else { throw Failure(message: "invalid UTF-8 in string", offset: start) }
        return s
    }
}
