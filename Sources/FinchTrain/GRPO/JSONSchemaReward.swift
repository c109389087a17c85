import FinchFormats
import Foundation

/// json-schema:FILE: 1 when the completion, whole (whitespace around it aside), is JSON that the schema of FILE
/// accepts, else 0. The schema is checked when the reward is made: the keywords Finch validates are `type`
/// (a name or a list), `enum`, `const`, `properties`, `required`, `additionalProperties` (a boolean or a schema),
/// `items`, `minItems` / `maxItems`, `minLength` / `maxLength`, `pattern`, `minimum` / `maximum` /
/// `exclusiveMinimum` / `exclusiveMaximum`, `anyOf` / `oneOf` / `allOf` / `not`, and the annotations `title`,
/// `description`, `$schema`, `$id`, `default`, `examples`; any other keyword (`$ref` among them) is an error
/// naming it, never ignored.
public final class JSONSchemaReward: RewardFunction {
    public let name = "json_schema"
    let schema: JSONValue
    let path: String

    static let validated: Set<String> = ["type", "enum", "const", "properties", "required", "additionalProperties", "items",
                                         "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
                                         "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "not"]
    static let annotations: Set<String> = ["title", "description", "$schema", "$id", "default", "examples"]

    public init(path: String) throws {
        self.path = path
        func fail(_ why: String) -> RewardError { RewardError(reward: "json-schema:\(path)", sample: nil, reason: why) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read the file") }
        do { schema = try JSONParser.parse(Array(data)) } catch { throw fail("not JSON: \(error)") }
        try Self.check(schema, at: "#", fail: fail)
    }

    /// Refuses what the validator does not implement, naming the keyword and where it is.
    static func check(_ s: JSONValue, at place: String, fail: (String) -> RewardError) throws {
        if s.boolValue != nil { return }
        guard let members = s.objectValue else { throw fail("\(place) is a \(s.kindName), not a schema (an object or a boolean)") }
        for (k, v) in members {
            if annotations.contains(k) { continue }
            guard validated.contains(k) else {
                throw fail("the keyword '\(k)' at \(place) is not implemented; the schema may use \(validated.sorted().joined(separator: ", "))")
            }
            switch k {
            case "properties":
                for (p, sub) in v.objectValue ?? [] { try check(sub, at: "\(place)/properties/\(p)", fail: fail) }
            case "items", "additionalProperties", "not":
                try check(v, at: "\(place)/\(k)", fail: fail)
            case "anyOf", "oneOf", "allOf":
                guard let list = v.arrayValue, !list.isEmpty else { throw fail("\(place)/\(k) must be a non-empty list of schemas") }
                for (i, sub) in list.enumerated() { try check(sub, at: "\(place)/\(k)/\(i)", fail: fail) }
            case "pattern":
                guard let p = v.stringValue, (try? NSRegularExpression(pattern: p)) != nil else {
                    throw fail("\(place)/pattern is not a regular expression")
                }
            default: break
            }
        }
    }

    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        batch.map { input in
            let text = input.completion.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let value = try? JSONParser.parse(text) else { return 0 }
            return Self.accepts(schema, value) ? 1 : 0
        }
    }

    static func accepts(_ s: JSONValue, _ v: JSONValue) -> Bool {
        if let b = s.boolValue { return b }
        guard let members = s.objectValue else { return false }
        func get(_ k: String) -> JSONValue? { members.first { $0.key == k }?.value }
        if let t = get("type") {
            let names = t.arrayValue?.compactMap(\.stringValue) ?? [t.stringValue].compactMap { $0 }
            guard names.contains(where: { hasType(v, $0) }) else { return false }
        }
        if let e = get("enum")?.arrayValue, !e.contains(where: { equal($0, v) }) { return false }
        if let c = get("const"), !equal(c, v) { return false }
        if let n = number(v) {
            if let m = get("minimum")?.doubleValue, n < m { return false }
            if let m = get("maximum")?.doubleValue, n > m { return false }
            if let m = get("exclusiveMinimum")?.doubleValue, n <= m { return false }
            if let m = get("exclusiveMaximum")?.doubleValue, n >= m { return false }
        }
        if let str = v.stringValue {
            if let m = get("minLength")?.intValue, str.count < m { return false }
            if let m = get("maxLength")?.intValue, str.count > m { return false }
            if let p = get("pattern")?.stringValue, let re = try? NSRegularExpression(pattern: p),
               re.firstMatch(in: str, range: NSRange(str.startIndex..<str.endIndex, in: str)) == nil { return false }
        }
        if let items = v.arrayValue {
            if let m = get("minItems")?.intValue, items.count < m { return false }
            if let m = get("maxItems")?.intValue, items.count > m { return false }
            if let i = get("items"), !items.allSatisfy({ accepts(i, $0) }) { return false }
        }
        if let object = v.objectValue {
            let properties = get("properties")?.objectValue ?? []
            for r in get("required")?.arrayValue?.compactMap(\.stringValue) ?? [] where !object.contains(where: { $0.key == r }) { return false }
            for (k, value) in object {
                if let p = properties.first(where: { $0.key == k }) {
                    if !accepts(p.value, value) { return false }
                } else if let extra = get("additionalProperties"), !accepts(extra, value) {
                    return false
                }
            }
        }
        if let all = get("allOf")?.arrayValue, !all.allSatisfy({ accepts($0, v) }) { return false }
        if let any = get("anyOf")?.arrayValue, !any.contains(where: { accepts($0, v) }) { return false }
        if let one = get("oneOf")?.arrayValue, one.filter({ accepts($0, v) }).count != 1 { return false }
        if let not = get("not"), accepts(not, v) { return false }
        return true
    }

    static func number(_ v: JSONValue) -> Double? { if case .number = v { return v.doubleValue } else { return nil } }

    static func hasType(_ v: JSONValue, _ type: String) -> Bool {
        switch (type, v) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): return true
        case ("integer", .number): return v.doubleValue.map { $0.rounded() == $0 && $0.isFinite } ?? false
        default: return false
        }
    }

    /// JSON equality with numbers compared by value (1 = 1.0) and objects regardless of member order.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.number, .number): return a.doubleValue == b.doubleValue
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.object(x), .object(y)):
            return x.count == y.count && x.allSatisfy { m in y.contains { $0.key == m.key && equal($0.value, m.value) } }
        default: return a == b
        }
    }
}
