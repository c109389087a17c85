/// A parsed JSON value that keeps object members in file order, with duplicates.
///
/// `JSONSerialization` and `Codable` lose member order, which matters here: safetensors headers
/// list tensors in a meaningful order, tokenizer.json specs are written back out, and chat
/// templates print tool schemas key by key. Read one with ``JSONParser``, write one with
/// ``serialized(indent:compactLeaves:)``.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text, so integers of any size survive exactly (nothing is rounded
    /// through `Double` until a caller asks for ``doubleValue``). With
    /// ``JSONParser/Options/allowsNonStandardNumbers``, `NaN`, `Infinity` and `-Infinity` are
    /// stored as `"nan"`, `"inf"` and `"-inf"`.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in file order; a key may appear more than once (see ``subscript(_:)``).
    case object([(key: String, value: JSONValue)])

    /// Structural equality: same kinds, same number text, same members in the same order.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The value of the first member named `key` of an object (nil for a missing key or a non-object).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    /// The number as an `Int` when its literal is an integer (no fraction or exponent) that fits.
    public var intValue: Int? {
        guard case .number(let text) = self else { return nil }
        return Int(text)
    }

    /// The number as an `Int` when its value is whole: integer literals that fit, and also
    /// literals such as `2.0` or `1e3` read through `Double` (magnitude below 9e18). Nil for
    /// fractions, non-finite values and integers too large for `Int`.
    public var wholeNumberValue: Int? {
        guard case .number(let text) = self else { return nil }
        if let i = Int(text) { return i }
        if let d = Double(text), d == d.rounded(), abs(d) < 9e18 { return Int(d) }
        return nil
    }

    /// The number read through `Double` (rounded to the nearest representable value), or nil for other kinds.
    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    /// The string, or nil for other kinds.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The boolean, or nil for other kinds.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The items of an array, or nil for other kinds.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members of an object in file order, or nil for other kinds.
    public var objectValue: [(key: String, value: JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Whether the value is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short name of the value's kind, for error messages ("a string", "an object", ...).
    public var kindName: String {
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
