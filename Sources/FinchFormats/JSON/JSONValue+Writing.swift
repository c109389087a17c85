extension JSONValue {
    /// An integer.
    public static func int(_ v: Int) -> JSONValue { .number(String(v)) }
    /// A number, or null when it is not finite (JSON has no NaN).
    public static func double(_ v: Double) -> JSONValue { v.isFinite ? .number("\(v)") : .null }
    /// An object with its members sorted by key (as `json.dumps(sort_keys=True)` writes one).
    public static func sortedObject(_ members: [String: JSONValue]) -> JSONValue {
        .object(members.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) })
    }

    /// The value as JSON text, members in their order.
    ///
    /// With `indent` 0 the text is compact (no spaces at all, like serde_json); with `indent` > 0,
    /// nested containers go on their own lines like Python's `json.dumps(indent=...)` (`", "`
    /// and `": "` separators), and `compactLeaves` keeps arrays of scalars on one line. Numbers
    /// are written as their literal text (`"nan"`, `"inf"`, `"-inf"` as `NaN`, `Infinity`,
    /// `-Infinity`), strings as ``quoted(_:asciiOnly:)`` writes them.
    public func serialized(indent: Int = 0, compactLeaves: Bool = false) -> String {
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
        case .string(let s): out += JSONValue.quoted(s)
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
                    out += JSONValue.quoted(m.key) + ":"
                    m.value.write(into: &out, indent: 0, level: 0, compactLeaves: compactLeaves)
                }
                out += "}"
                return
            }
            let pad = String(repeating: " ", count: indent * (level + 1))
            out += "{\n"
            for (k, m) in members.enumerated() {
                out += pad + JSONValue.quoted(m.key) + ": "
                m.value.write(into: &out, indent: indent, level: level + 1, compactLeaves: compactLeaves)
                out += k + 1 < members.count ? ",\n" : "\n"
            }
            out += String(repeating: " ", count: indent * level) + "}"
        }
    }

    /// `s` as a JSON string literal, with its quotes, byte for byte as serde_json writes it:
    /// `"` and `\` escaped, `\b \f \n \r \t`, other control characters as `\u00xx`, the rest raw
    /// UTF-8. With `asciiOnly`, every scalar above `~` is written as `\uxxxx` (a surrogate pair
    /// above the BMP), as Python's `json.dumps(ensure_ascii=True)` does.
    public static func quoted(_ s: String, asciiOnly: Bool = false) -> String {
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
}
