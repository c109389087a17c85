/// A parsed JSON value that keeps object members in file order.
///
/// Used for tokenizer.json / tokenizer_config.json (whose specs are written back out) and for
/// chat-template data such as tool schemas, where key order shows in the rendered prompt.
indirect enum TokJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's literal text, so 64-bit integers survive exactly.
    case number(String)
    case string(String)
    case array([TokJSON])
    case object([(key: String, value: TokJSON)])

    static func == (a: TokJSON, b: TokJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y || Double(x) == Double(y)
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    subscript(key: String) -> TokJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    var arrayValue: [TokJSON]? { if case .array(let a) = self { return a }; return nil }
    var objectValue: [(key: String, value: TokJSON)]? { if case .object(let o) = self { return o }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }
    var intValue: Int? {
        guard case .number(let t) = self else { return nil }
        if let i = Int(t) { return i }
        if let d = Double(t), d == d.rounded(), abs(d) < 9e18 { return Int(d) }
        return nil
    }
    var doubleValue: Double? { if case .number(let t) = self { return Double(t) }; return nil }

    /// A short name of the value's kind, for error messages.
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

// MARK: - Parsing

struct TokJSONParseError: Error {
    let offset: Int
    let reason: String
}

extension TokJSON {
    /// Parses UTF-8 JSON text.
    static func parse(_ bytes: [UInt8]) throws -> TokJSON {
        try bytes.withUnsafeBufferPointer { buf in
            var p = JSONScanner(buf: buf)
            p.skipSpace()
            let v = try p.value(depth: 0)
            p.skipSpace()
            if p.i != buf.count { throw TokJSONParseError(offset: p.i, reason: "unexpected text after the value") }
            return v
        }
    }

    static func parse(_ text: String) throws -> TokJSON { try parse(Array(text.utf8)) }
}

private struct JSONScanner {
    let buf: UnsafeBufferPointer<UInt8>
    var i = 0

    init(buf: UnsafeBufferPointer<UInt8>) { self.buf = buf }

    mutating func skipSpace() {
        while i < buf.count {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    func fail(_ reason: String) -> TokJSONParseError { TokJSONParseError(offset: i, reason: reason) }

    mutating func value(depth: Int) throws -> TokJSON {
        guard depth < 512 else { throw fail("nesting too deep") }
        guard i < buf.count else { throw fail("unexpected end of input") }
        switch buf[i] {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(key: String, value: TokJSON)] = []
            skipSpace()
            if i < buf.count && buf[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipSpace()
                guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipSpace()
                let v = try value(depth: depth + 1)
                members.append((key, v))
                skipSpace()
                guard i < buf.count else { throw fail("unexpected end of input in an object") }
                if buf[i] == UInt8(ascii: ",") { i += 1; continue }
                if buf[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [TokJSON] = []
            skipSpace()
            if i < buf.count && buf[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < buf.count else { throw fail("unexpected end of input in an array") }
                if buf[i] == UInt8(ascii: ",") { i += 1; continue }
                if buf[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null"); return .null
        case UInt8(ascii: "N"):
            try literal("NaN"); return .number("nan")
        case UInt8(ascii: "I"):
            try literal("Infinity"); return .number("inf")
        default:
            return try number()
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= buf.count else { throw fail("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where buf[i + k] != w[k] { throw fail("invalid literal") }
        i += n
    }

    mutating func number() throws -> TokJSON {
        let start = i
        if i < buf.count && buf[i] == UInt8(ascii: "-") {
            i += 1
            if i < buf.count && buf[i] == UInt8(ascii: "I") { try literal("Infinity"); return .number("-inf") }
        }
        var digits = 0
        while i < buf.count {
            let c = buf[i]
            if (c >= 0x30 && c <= 0x39) { digits += 1; i += 1 }
            else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
                        || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { i += 1 }
            else { break }
        }
        guard digits > 0 else { i = start; throw fail("invalid value") }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        guard Double(text) != nil else { i = start; throw fail("invalid number \(text)") }
        return .number(text)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= buf.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            i += 1
        }
        var bytes = Array(buf[start..<i])
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return String(decoding: bytes, as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") {
                i += 1
                guard i < buf.count else { break }
                let e = buf[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): bytes.append(0x22)
                case UInt8(ascii: "\\"): bytes.append(0x5C)
                case UInt8(ascii: "/"): bytes.append(0x2F)
                case UInt8(ascii: "b"): bytes.append(0x08)
                case UInt8(ascii: "f"): bytes.append(0x0C)
                case UInt8(ascii: "n"): bytes.append(0x0A)
                case UInt8(ascii: "r"): bytes.append(0x0D)
                case UInt8(ascii: "t"): bytes.append(0x09)
                case UInt8(ascii: "u"):
                    var v = try hex4()
                    if v >= 0xD800 && v < 0xDC00, i + 1 < buf.count, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u") {
                        let save = i
                        i += 2
                        let lo = try hex4()
                        if lo >= 0xDC00 && lo < 0xE000 {
                            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            i = save
                        }
                    }
                    let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                    bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw fail("invalid escape \\\(Character(Unicode.Scalar(e)))")
                }
            } else {
                bytes.append(c)
                i += 1
            }
        }
        throw fail("unterminated string")
    }
}

// MARK: - Writing

extension TokJSON {
    /// Serializes the value. With `indent` > 0, nested containers go on their own lines
    /// (like `json.dumps(indent=...)`); `compactLeaves` keeps arrays of scalars on one line.
    func serialized(indent: Int = 0, compactLeaves: Bool = false) -> String {
        var out = ""
        write(into: &out, indent: indent, level: 0, compactLeaves: compactLeaves)
        return out
    }

    private var isScalarArray: Bool {
        guard case .array(let items) = self else { return false }
        return items.allSatisfy {
            switch $0 { case .array, .object: return false; default: return true }
        }
    }

    private func write(into out: inout String, indent: Int, level: Int, compactLeaves: Bool) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let t):
            switch t {
            case "nan": out += "NaN"
            case "inf": out += "Infinity"
            case "-inf": out += "-Infinity"
            default: out += t
            }
        case .string(let s): out += jsonQuote(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            if indent == 0 || (compactLeaves && isScalarArray) {
                out += "["
                for (k, v) in items.enumerated() {
                    if k > 0 { out += indent == 0 ? "," : ", " }
                    v.write(into: &out, indent: 0, level: 0, compactLeaves: compactLeaves)
                }
                out += "]"
                return
            }
            let pad = String(repeating: " ", count: indent * (level + 1))
            out += "[\n"
            for (k, v) in items.enumerated() {
                out += pad
                v.write(into: &out, indent: indent, level: level + 1, compactLeaves: compactLeaves)
                out += k + 1 < items.count ? ",\n" : "\n"
            }
            out += String(repeating: " ", count: indent * level) + "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            if indent == 0 {
                out += "{"
                for (k, m) in members.enumerated() {
                    if k > 0 { out += "," }
                    out += jsonQuote(m.key) + ":"
                    m.value.write(into: &out, indent: 0, level: 0, compactLeaves: compactLeaves)
                }
                out += "}"
                return
            }
            let pad = String(repeating: " ", count: indent * (level + 1))
            out += "{\n"
            for (k, m) in members.enumerated() {
                out += pad + jsonQuote(m.key) + ": "
                m.value.write(into: &out, indent: indent, level: level + 1, compactLeaves: compactLeaves)
                out += k + 1 < members.count ? ",\n" : "\n"
            }
            out += String(repeating: " ", count: indent * level) + "}"
        }
    }
}

/// `s` as a JSON string literal: `"` and `\` escaped, `\b \f \n \r \t`, other control characters
/// as `\u00xx`; with `asciiOnly`, every non-ASCII scalar as `\uXXXX` (surrogate pairs above the BMP),
/// as Python's `json.dumps(ensure_ascii=True)` writes it.
func jsonQuote(_ s: String, asciiOnly: Bool = false) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - h.count)) + h
    }
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += hex4(scalar.value)
            } else if asciiOnly && scalar.value > 0x7E {
                if scalar.value >= 0x10000 {
                    let v = scalar.value - 0x10000
                    out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                } else {
                    out += hex4(scalar.value)
                }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
    return out
}
