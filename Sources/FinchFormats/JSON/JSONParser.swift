/// An order-preserving JSON parser over raw bytes: the one JSON reader of Finch.
///
/// With ``Options/strict`` (the default) it follows RFC 8259 to the letter: it rejects trailing
/// commas, leading zeros, control characters in strings, invalid UTF-8 and unpaired surrogate
/// escapes; safetensors headers and `model.safetensors.index.json` are read this way.
/// ``Options/lenient`` reads what Python's `json` module and other loose writers produce
/// (tokenizer.json, tokenizer_config.json, chat-template data). In both, trailing whitespace
/// after the value is allowed (safetensors pads headers with spaces), object members keep
/// their order and duplicate keys are all kept (``JSONValue/subscript(_:)`` finds the first).
///
/// ```swift
/// let v = try JSONParser.parse(#"{"a": [1, 2]}"#)
/// v["a"]?.arrayValue?.count  // 2
/// ```
public struct JSONParser {
    /// What the parser accepts beyond RFC 8259.
    public struct Options: Sendable {
        /// Deepest nesting of arrays and objects accepted (a top-level container is depth 1).
        public var maxDepth: Int
        /// Accept `NaN`, `Infinity` and `-Infinity` (as Python's `json` writes them; stored as
        /// `"nan"`, `"inf"`, `"-inf"`) and any number literal made of digits, `.`, `e`, `E`, `+`
        /// and `-` that `Double` reads (`01`, `1.`, `.5`, `+1`).
        public var allowsNonStandardNumbers: Bool
        /// Repair strings instead of rejecting them: invalid UTF-8 and unpaired surrogate escapes
        /// become U+FFFD, and raw control characters are kept as they are.
        public var repairsStrings: Bool

        public init(maxDepth: Int, allowsNonStandardNumbers: Bool, repairsStrings: Bool) {
            self.maxDepth = maxDepth
            self.allowsNonStandardNumbers = allowsNonStandardNumbers
            self.repairsStrings = repairsStrings
        }

        /// RFC 8259, nesting up to 64 deep.
        public static let strict = Options(maxDepth: 64, allowsNonStandardNumbers: false, repairsStrings: false)
        /// Python-style numbers and repaired strings, nesting up to 512 deep.
        public static let lenient = Options(maxDepth: 512, allowsNonStandardNumbers: true, repairsStrings: true)
    }

    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private let options: Options

    /// Parses one complete JSON document from `bytes`.
    /// - Throws: ``JSONParseError`` with the byte offset of the problem.
    public static func parse(_ bytes: UnsafeRawBufferPointer, options: Options = .strict) throws(JSONParseError) -> JSONValue {
        var p = JSONParser(bytes: bytes, options: options)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.pos != bytes.count { throw p.fail("unexpected data after the JSON value") }
        return v
    }

    /// Parses one complete JSON document from UTF-8 `bytes`.
    public static func parse(_ bytes: [UInt8], options: Options = .strict) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBytes { raw in Result { () throws(JSONParseError) in try parse(raw, options: options) } }.get()
    }

    /// Parses one complete JSON document from `text`.
    public static func parse(_ text: String, options: Options = .strict) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), options: options)
    }

    private init(bytes: UnsafeRawBufferPointer, options: Options) {
        self.bytes = bytes
        self.options = options
    }

    private func fail(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: pos) }

    private func peek() -> UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 { pos += 1 } else { break }
        }
    }

    private mutating func expect(_ literal: StaticString) throws(JSONParseError) {
        let n = literal.utf8CodeUnitCount
        guard bytes.count - pos >= n else { throw fail("unexpected end of input") }
        let lit = UnsafeRawBufferPointer(start: literal.utf8Start, count: n)
        for i in 0..<n where bytes[pos + i] != lit[i] { throw fail("invalid literal") }
        pos += n
    }

    /// `depth`: how many containers enclose the value.
    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard let c = peek() else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default:
            if options.allowsNonStandardNumbers { return try parseNonStandardNumber() }
            if c == UInt8(ascii: "-") || isDigit(c) { return try parseNumber() }
            throw fail("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > options.maxDepth { throw fail("nesting deeper than \(options.maxDepth)") }
        pos += 1
        var members: [(key: String, value: JSONValue)] = []
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
            members.append((key, value))
            skipWhitespace()
            guard let c = peek() else { throw fail("unexpected end of input in object") }
            pos += 1
            if c == UInt8(ascii: "}") { return .object(members) }
            if c != UInt8(ascii: ",") { pos -= 1; throw fail("expected ',' or '}'") }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > options.maxDepth { throw fail("nesting deeper than \(options.maxDepth)") }
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

    /// An RFC 8259 number, kept as its literal text.
    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
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
        return .number(text(start..<pos))
    }

    /// `NaN`, `Infinity`, `-Infinity`, or a run of number characters that `Double` reads
    /// (``Options/allowsNonStandardNumbers``). Errors point at the start of the number.
    private mutating func parseNonStandardNumber() throws(JSONParseError) -> JSONValue {
        let start = pos
        switch bytes[pos] {
        case UInt8(ascii: "N"): try expect("NaN"); return .number("nan")
        case UInt8(ascii: "I"): try expect("Infinity"); return .number("inf")
        case UInt8(ascii: "-"):
            pos += 1
            if peek() == UInt8(ascii: "I") { try expect("Infinity"); return .number("-inf") }
        default: break
        }
        var digits = 0
        while let c = peek() {
            if isDigit(c) {
                digits += 1
            } else if c != UInt8(ascii: ".") && c != UInt8(ascii: "e") && c != UInt8(ascii: "E")
                        && c != UInt8(ascii: "+") && c != UInt8(ascii: "-") {
                break
            }
            pos += 1
        }
        let literal = text(start..<pos)
        guard digits > 0, Double(literal) != nil else {
            let message = pos == start ? "unexpected character '\(Character(Unicode.Scalar(bytes[start])))'"
                                       : "invalid number \(literal)"
            pos = start
            throw fail(message)
        }
        return .number(literal)
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
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

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - pos >= 4 else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let h = hexValue(bytes[pos]) else { throw fail("invalid \\u escape") }
            v = v << 4 | h
            pos += 1
        }
        return v
    }

    /// The scalar of a `\uXXXX` escape (after the `u`), joining a surrogate pair.
    private mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        var code = try parseHex4()
        if code >= 0xd800 && code < 0xdc00 {
            if bytes.count - pos >= 6, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                let save = pos
                pos += 2
                let low = try parseHex4()
                if low >= 0xdc00 && low < 0xe000 {
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
                } else if options.repairsStrings {
                    pos = save  // the high half alone becomes U+FFFD; the next escape stands on its own
                } else {
                    throw fail("unpaired surrogate in \\u escape")
                }
            } else if !options.repairsStrings {
                throw fail("unpaired surrogate in \\u escape")
            }
        } else if code >= 0xdc00 && code < 0xe000 && !options.repairsStrings {
            throw fail("unpaired surrogate in \\u escape")
        }
        return Unicode.Scalar(code) ?? "\u{FFFD}"
    }

    /// The string's bytes decoded: validated, or repaired with ``Options/repairsStrings``.
    private func decode(_ raw: UnsafeRawBufferPointer, start: Int) throws(JSONParseError) -> String {
        if options.repairsStrings { return String(decoding: raw, as: UTF8.self) }
        guard let s = validatedUTF8String(raw) else {
            throw JSONParseError(message: "invalid UTF-8 in string", offset: start)
        }
        return s
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        pos += 1  // opening quote
        let start = pos
        let allowsControl = options.repairsStrings
        // Fast path: no escapes.
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
                pos += 1
                return try decode(raw, start: start)
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 && !allowsControl { throw fail("control character in string") }
            pos += 1
        }
        // Slow path with escapes.
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 && !allowsControl { pos -= 1; throw fail("control character in string") }
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
                UTF8.encode(try parseUnicodeEscape()) { out.append($0) }
            default:
                pos -= 1
                throw fail("invalid escape")
            }
        }
        return try out.withUnsafeBytes { raw in Result { () throws(JSONParseError) in try decode(raw, start: start) } }.get()
    }
}

/// Why a JSON document could not be parsed, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong ("expected ',' or '}'", "invalid UTF-8 in string", ...).
    public let message: String
    /// Byte offset of the problem in the parsed text.
    public let offset: Int

    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}
