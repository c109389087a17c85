import FinchFormats
import Foundation
import Yams

/// Where a setting's value came from: a run file (and its line), or a flag.
public struct SettingPlace: Sendable, Equatable, CustomStringConvertible {
    /// The run file, or `train_config.json`; nil for a flag.
    public var file: String?
    public var line: Int?
    public var column: Int?
    /// The key as the file spells it.
    public var key: String?

    public init(file: String? = nil, line: Int? = nil, column: Int? = nil, key: String? = nil) {
        self.file = file; self.line = line; self.column = column; self.key = key
    }

    /// `run.yaml:3:1`, or `run.yaml`, or `the command line`.
    public var description: String {
        guard let file else { return "the command line" }
        return file + (line.map { ":\($0)" } ?? "") + (column.map { ":\($0)" } ?? "")
    }
}

/// Why a run's settings were refused; each case names the setting or file, the place, and what to do.
public enum SettingError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A key no setting has (a typo); `didYouMean`: settings that start alike.
    case unknownKey(key: String, place: SettingPlace, didYouMean: [String])
    /// A value of the wrong kind for its setting (`expected`: what it takes).
    case wrongType(key: String, place: SettingPlace, expected: String, got: JSONValue)
    /// A value that cannot run (`reason` names the setting and the allowed values).
    case invalid(key: String, reason: String)
    /// A setting the run needs and nobody gave (`advice`: the flag or key that gives it).
    case missing(key: String, advice: String)
    /// A setting this model or run cannot use.
    case notApplicable(key: String, reason: String)
    /// The run file cannot be read.
    case unreadableFile(path: String)
    /// The run file is not YAML, or not a mapping of plain names to values (`reason` says which part).
    case badRunFile(place: SettingPlace, reason: String)
    /// The file's top level is not a mapping of settings.
    case notAMapping(place: SettingPlace)

    public var description: String {
        switch self {
        case .unknownKey(let key, let place, let close):
            return "\(place): unknown setting '\(key)'" + (close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)")
                + "; the settings are the keys of train_config.json (see finch train --help)"
        case .wrongType(let key, let place, let expected, let got):
            let shown = got.serialized()
            return "\(place): '\(key)' should be \(expected) (got \(shown.count > 40 ? got.kindName : shown))"
        case .invalid(_, let reason): return "invalid training setting: \(reason)"
        case .missing(let key, let advice): return "invalid training setting: \(key): \(advice)"
        case .notApplicable(let key, let reason): return "invalid training setting: \(key): \(reason)"
        case .unreadableFile(let path): return "\(path): cannot read the file; give --config an existing YAML file of settings"
        case .badRunFile(let place, let reason): return "\(place): \(reason)"
        case .notAMapping(let place): return "\(place): expected a mapping of settings (key: value) at the top level"
        }
    }
}

/// A run file's YAML read as ``JSONValue``s, built from Yams' node tree rather than by `Yams.load`,
/// which traps on a mapping key that is not a scalar (the fuzzer's `- ? - 3`) and on a base-60 integer
/// that overflows. Keys must be plain names (Yams' parser refuses repeated ones); at most 100 000
/// values are made (an alias repeats a subtree, and aliases of aliases grow exponentially).
enum RunFileYAML {
    static let valueLimit = 100_000

    /// The top-level settings of a run file in file order, each with its line.
    static func settings(_ text: String, path: String) throws -> [(key: String, value: JSONValue, place: SettingPlace)] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw SettingError.badRunFile(place: SettingPlace(file: path), reason: "not valid YAML: \(error)")
        }
        guard let node else { throw SettingError.notAMapping(place: SettingPlace(file: path)) }
        var budget = valueLimit
        guard case .mapping(let pairs) = node else {
            _ = try convert(node, path: path, budget: &budget)   // a bad key or an alias inside is named first
            throw SettingError.notAMapping(place: SettingPlace(file: path))
        }
        return try pairs.map { key, value in
            guard case .scalar(let k) = key else {
                throw SettingError.badRunFile(place: place(key, path), reason: "a key must be a plain name, not a list or a mapping")
            }
            var p = place(key, path)
            p.key = k.string
            return (key: k.string, value: try convert(value, path: path, budget: &budget), place: p)
        }
    }

    /// The whole document as one value (tests, and the fuzzer's harness).
    static func value(_ text: String, path: String) throws -> JSONValue? {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw SettingError.badRunFile(place: SettingPlace(file: path), reason: "not valid YAML: \(error)")
        }
        guard let node else { return nil }
        var budget = valueLimit
        return try convert(node, path: path, budget: &budget)
    }

    private static func place(_ n: Node, _ path: String) -> SettingPlace {
        SettingPlace(file: path, line: n.mark?.line, column: n.mark?.column)
    }

    private static func convert(_ node: Node, path: String, budget: inout Int) throws -> JSONValue {
        budget -= 1
        guard budget >= 0 else {
            throw SettingError.badRunFile(place: SettingPlace(file: path),
                                          reason: "more than \(valueLimit) values (aliases repeating parts of the file?); "
                                              + "a run file is a short mapping of settings")
        }
        switch node {
        case .scalar(let scalar):
            // YAML 1.1's base-60 integers (`1:30`) overflow and trap in Yams; read them as text, as YAML 1.2 does.
            if node.tag.rawValue == Tag.Name.int.rawValue && scalar.string.contains(":") { return .string(scalar.string) }
            switch Constructor.default.any(from: node) {
            case let b as Bool: return .bool(b)
            case let i as Int: return .int(i)
            case let d as Double: return d.isFinite ? .double(d) : .string(scalar.string)
            case is NSNull: return .null
            default: return .string(scalar.string)   // text, and timestamps or binary read as their text
            }
        case .sequence(let items):
            return .array(try items.map { try convert($0, path: path, budget: &budget) })
        case .mapping(let pairs):
            return .object(try pairs.map { key, value in
                guard case .scalar(let k) = key else {
                    throw SettingError.badRunFile(place: place(key, path), reason: "a key must be a plain name, not a list or a mapping")
                }
                return (key: k.string, value: try convert(value, path: path, budget: &budget))
            })
        case .alias:
            throw SettingError.badRunFile(place: place(node, path), reason: "aliases (*name) are not supported in run files")
        }
    }
}

/// A ``JSONValue`` through `Codable`, so that the settings ride in `trainer_state.json` (written by
/// `JSONEncoder`) as the same JSON object ``TrainingConfig/json`` makes.
struct JSONTree: Codable {
    var value: JSONValue
    init(_ value: JSONValue) { self.value = value }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        if let object = try? decoder.container(keyedBy: Key.self) {
            value = .object(try object.allKeys.sorted { $0.stringValue < $1.stringValue }.map {
                (key: $0.stringValue, value: try object.decode(JSONTree.self, forKey: $0).value)
            })
        } else if var list = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !list.isAtEnd { items.append(try list.decode(JSONTree.self).value) }
            value = .array(items)
        } else {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = .null }
            else if let b = try? c.decode(Bool.self) { value = .bool(b) }
            else if let i = try? c.decode(Int64.self) { value = .number(String(i)) }
            else if let u = try? c.decode(UInt64.self) { value = .number(String(u)) }
            else if let d = try? c.decode(Double.self) { value = .double(d) }
            else { value = .string(try c.decode(String.self)) }
        }
    }

    func encode(to encoder: Encoder) throws {
        switch value {
        case .null: var c = encoder.singleValueContainer(); try c.encodeNil()
        case .bool(let b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .number(let t):
            var c = encoder.singleValueContainer()
            if let i = Int64(t) { try c.encode(i) } else if let u = UInt64(t) { try c.encode(u) } else { try c.encode(Double(t) ?? .nan) }
        case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
        case .array(let items):
            var c = encoder.unkeyedContainer()
            for item in items { try c.encode(JSONTree(item)) }
        case .object(let members):
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in members { try c.encode(JSONTree(v), forKey: Key(stringValue: k)) }
        }
    }
}
