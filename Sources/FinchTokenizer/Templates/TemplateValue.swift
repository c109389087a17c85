import FinchFormats

/// A value passed into a chat template: the JSON data model (strings, numbers, booleans,
/// null, arrays, and objects whose keys keep their order, since `tojson` output shows it).
public enum TemplateValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    /// An object; keys keep their order.
    case object([(key: String, value: TemplateValue)])

    public static func == (a: TemplateValue, b: TemplateValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The member `key` of an object.
    public subscript(key: String) -> TemplateValue? {
        guard case .object(let m) = self else { return nil }
        return m.first { $0.key == key }?.value
    }

    /// Parses JSON text (e.g. a tool schema) keeping key order.
    public init(json text: String) throws {
        do {
            self = TemplateValue(try JSONParser.parse(text, options: .lenient))
        } catch {
            throw TokenizerError.invalidJSON(path: "<string>", offset: error.offset, reason: error.message)
        }
    }

    public init(_ j: JSONValue) {
        switch j {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let t):
            if let i = Int(t) { self = .int(i) } else { self = .double(Double(t) ?? .nan) }
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(TemplateValue.init))
        case .object(let o): self = .object(o.map { ($0.key, TemplateValue($0.value)) })
        }
    }
}

extension TemplateValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    /// Literals build values directly: `"text"`, `3`, `0.5`, `true`, `[...]`, `["key": ...]`, `nil`.
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: TemplateValue...) { self = .array(elements) }
    /// Keys keep the order written.
    public init(dictionaryLiteral elements: (String, TemplateValue)...) { self = .object(elements.map { ($0.0, $0.1) }) }
    public init(nilLiteral: ()) { self = .null }
}
