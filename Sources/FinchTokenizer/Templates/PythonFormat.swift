import FinchFormats

/// Python's text formatting of values, which chat templates expose (`{{ 1.0 }}` prints "1.0",
/// `{{ ['a'] }}` prints "['a']", `tojson` is `json.dumps`).
enum PythonFormat {
    /// `repr(float)`: shortest round-trip digits; scientific notation when the exponent is
    /// below -4 or at least 16.
    static func floatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description is also the shortest round-trip form; take its digits and exponent.
        var s = "\(abs(d))"
        var exp = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp = Int(s[s.index(after: e)...]) ?? 0
            s = String(s[..<e])
        }
        var intPart = s
        var fracPart = ""
        if let dot = s.firstIndex(of: ".") {
            intPart = String(s[..<dot])
            fracPart = String(s[s.index(after: dot)...])
        }
        var digits = intPart + fracPart
        var point = intPart.count + exp  // position of the decimal point within digits
        // Strip leading zeros.
        while digits.count > 1 && digits.first == "0" { digits.removeFirst(); point -= 1 }
        // Strip trailing zeros.
        while digits.count > 1 && digits.last == "0" { digits.removeLast() }
        let exp10 = point - 1
        let sign = d < 0 ? "-" : ""
        if exp10 < -4 || exp10 >= 16 {
            var m = String(digits.first!)
            if digits.count > 1 { m += "." + digits.dropFirst() }
            let e = abs(exp10)
            return sign + m + "e" + (exp10 < 0 ? "-" : "+") + (e < 10 ? "0" : "") + String(e)
        }
        if point <= 0 {
            return sign + "0." + String(repeating: "0", count: -point) + digits
        }
        if point >= digits.count {
            return sign + digits + String(repeating: "0", count: point - digits.count) + ".0"
        }
        let i = digits.index(digits.startIndex, offsetBy: point)
        return sign + digits[..<i] + "." + digits[i...]
    }

    /// Python's `str.isprintable` for one scalar.
    static func isPrintable(_ s: Unicode.Scalar) -> Bool {
        if s == " " { return true }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned,
             .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default:
            return true
        }
    }

    /// `repr(str)`.
    static func stringRepr(_ s: String) -> String {
        let hasSingle = s.unicodeScalars.contains("'")
        let hasDouble = s.unicodeScalars.contains("\"")
        let quote: Unicode.Scalar = hasSingle && !hasDouble ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(quote)
        func hex(_ v: UInt32, _ width: Int) -> String {
            let h = String(v, radix: 16)
            return String(repeating: "0", count: max(0, width - h.count)) + h
        }
        for c in s.unicodeScalars {
            switch c {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if c == quote {
                    out.append("\\"); out.append(c)
                } else if c.value < 0x7F && c.value >= 0x20 {
                    out.append(c)
                } else if isPrintable(c) && c.value >= 0xA0 {
                    out.append(c)
                } else if c.value < 0x100 {
                    out.append(contentsOf: ("\\x" + hex(c.value, 2)).unicodeScalars)
                } else if c.value < 0x10000 {
                    out.append(contentsOf: ("\\u" + hex(c.value, 4)).unicodeScalars)
                } else {
                    out.append(contentsOf: ("\\U" + hex(c.value, 8)).unicodeScalars)
                }
            }
        }
        out.append(quote)
        return String(out)
    }
}

/// Python's `json.dumps` with the options HF's `tojson` filter exposes.
struct PythonJSON {
    var ensureASCII = false
    /// nil: everything on one line; otherwise the indent string per level.
    var indent: String? = nil
    var itemSeparator = ", "
    var keySeparator = ": "
    var sortKeys = false

    struct NotSerializable: Error { let typeName: String }

    func dumps(_ v: Value) throws -> String {
        var out = ""
        try write(v, &out, level: 0)
        return out
    }

    private func write(_ v: Value, _ out: inout String, level: Int) throws {
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" }
            else { out += PythonFormat.floatRepr(d) }
        case .string(let s): out += JSONValue.quoted(s, asciiOnly: ensureASCII)
        case .list(let a), .tuple(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            try items(a.count, &out, level: level) { k, o in try write(a[k], &o, level: level + 1) }
            out += "]"
        case .dict(let d):
            try writeObject(d, &out, level: level)
        case .namespace(let n):
            try writeObject(n.attributes, &out, level: level)
        default:
            throw NotSerializable(typeName: v.typeName)
        }
    }

    private func writeObject(_ d: OrderedDict, _ out: inout String, level: Int) throws {
        if d.count == 0 { out += "{}"; return }
        var pairs: [(String, Value)] = []
        for (k, v) in d.pairs {
            guard let key = k.jsonKey else { throw NotSerializable(typeName: "dict key of type \(k.typeName)") }
            pairs.append((key, v))
        }
        if sortKeys { pairs.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } }
        out += "{"
        try items(pairs.count, &out, level: level) { k, o in
            o += JSONValue.quoted(pairs[k].0, asciiOnly: ensureASCII) + keySeparator
            try write(pairs[k].1, &o, level: level + 1)
        }
        out += "}"
    }

    private func items(_ n: Int, _ out: inout String, level: Int, _ body: (Int, inout String) throws -> Void) throws {
        if let indent {
            let inner = "\n" + String(repeating: indent, count: level + 1)
            for k in 0..<n {
                out += k == 0 ? inner : itemSeparator + inner
                try body(k, &out)
            }
            out += "\n" + String(repeating: indent, count: level)
        } else {
            for k in 0..<n {
                if k > 0 { out += itemSeparator }
                try body(k, &out)
            }
        }
    }
}
