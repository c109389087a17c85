/// A parsed JSON value that keeps object keys in file order (safetensors headers list tensors
/// in a meaningful order, which `JSONSerialization` would lose).
indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text, so 64-bit integers are not rounded through Double.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([JSONMember])

    /// The value as an exact integer (no fraction or exponent), or nil.
    var intValue: Int? {
        guard case .number(let text) = self else { return nil }
        return Int(text)
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var objectValue: [JSONMember]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// First member named `key` of an object.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

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

/// One `"key": value` pair of a JSON object.
struct JSONMember: Sendable, Equatable {
    let key: String
    let value: JSONValue
}

/// Escapes `s` as a JSON string literal (with quotes), byte-for-byte like serde_json:
/// `"` and `\` escaped, `\b \f \n \r \t`, other control characters as `\u00xx`, the rest raw UTF-8.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    let hex: [Character] = Array("0123456789abcdef")
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
                out += "\\u00"
                out.append(hex[Int(scalar.value >> 4)])
                out.append(hex[Int(scalar.value & 0xf)])
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
    return out
}
