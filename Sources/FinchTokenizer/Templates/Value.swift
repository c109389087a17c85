import Foundation

/// A `namespace()` object: attributes assignable from inner scopes (`{% set ns.x = ... %}`).
final class Namespace {
    var attributes: OrderedDict
    init(_ a: OrderedDict) { attributes = a }
}

/// A macro defined with `{% macro %}`.
final class Macro {
    let name: String
    let params: [(String, Expr?)]
    let body: [Node]
    init(name: String, params: [(String, Expr?)], body: [Node]) {
        self.name = name; self.params = params; self.body = body
    }
}

/// The `loop` variable of a for loop.
final class LoopInfo {
    let length: Int
    var index0 = 0
    var items: [Value]
    init(items: [Value]) { self.items = items; self.length = items.count }
}

/// Global functions callable from templates.
enum Builtin: String {
    case raiseException = "raise_exception"
    case range
    case namespace
    case strftimeNow = "strftime_now"
    case dict
    case joiner, cycler, lipsum
}

/// A runtime value of the template interpreter (Python's data model as Jinja sees it).
indirect enum Value {
    /// Jinja's `Undefined`; carries a description for error messages.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case tuple([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    case macro(Macro)
    case builtin(Builtin)
    case loop(LoopInfo)
    /// A method bound to its receiver, e.g. `'abc'.upper` before the call.
    case boundMethod(receiver: Value, name: String)

    init(_ t: TemplateValue) {
        switch t {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init))
        case .object(let o): self = .dict(OrderedDict(o.map { (.string($0.key), Value($0.value)) }))
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .macro, .builtin, .loop, .boundMethod: return true
        }
    }

    /// Python type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "Macro"
        case .builtin: return "builtin_function_or_method"
        case .loop: return "LoopContext"
        case .boundMethod: return "method"
        }
    }

    /// The elements when iterated (`for`), or nil if not iterable.
    var iterated: [Value]? {
        switch self {
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .namespace(let n): return n.attributes.keys
        default: return nil
        }
    }

    // MARK: Python str() / repr()

    /// Python `str(value)` (what `{{ }}` prints; Undefined prints as "").
    var str: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr(value)`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return PythonFormat.floatRepr(d)
        case .string(let s): return PythonFormat.stringRepr(s)
        case .list(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): return a.count == 1 ? "(" + a[0].repr + ",)" : "(" + a.map(\.repr).joined(separator: ", ") + ")"
        case .dict(let d): return "{" + d.pairs.map { $0.0.repr + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n):
            return "<Namespace " + "{" + n.attributes.pairs.map { $0.0.repr + ": " + $0.1.repr }.joined(separator: ", ") + "}>"
        case .macro(let m): return "<Macro '\(m.name)'>"
        case .builtin(let b): return "<built-in function \(b.rawValue)>"
        case .loop: return "<LoopContext>"
        case .boundMethod(_, let name): return "<built-in method \(name)>"
        }
    }
}

// MARK: - Equality and ordering (Python semantics)

extension Value {
    var numeric: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python `==`.
    func equals(_ other: Value) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(a), .string(b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case let (.int(a), .int(b)): return a == b
        case let (.list(a), .list(b)), let (.tuple(a), .tuple(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case let (.dict(a), .dict(b)):
            guard a.count == b.count else { return false }
            for (k, v) in a.pairs {
                guard let w = b[k], v.equals(w) else { return false }
            }
            return true
        case let (.namespace(a), .namespace(b)): return a === b
        case let (.macro(a), .macro(b)): return a === b
        case let (.builtin(a), .builtin(b)): return a == b
        default:
            if let x = numeric, let y = other.numeric { return x == y }
            return false
        }
    }

    /// Python ordering (`<`); nil when the types cannot be ordered.
    func lessThan(_ other: Value) -> Bool? {
        switch (self, other) {
        case let (.string(a), .string(b)):
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case let (.int(a), .int(b)): return a < b
        case let (.list(a), .list(b)), let (.tuple(a), .tuple(b)):
            for (x, y) in zip(a, b) where !x.equals(y) { return x.lessThan(y) }
            return a.count < b.count
        default:
            if let x = numeric, let y = other.numeric { return x < y }
            return nil
        }
    }
}

// MARK: - Conversion back to data

extension Value {
    /// The object key `json.dumps` writes for this dict key: a string as is, a number, boolean
    /// or None as its JSON text; nil for keys of other kinds (not serializable).
    var jsonKey: String? {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let x): return PythonFormat.floatRepr(x)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        default: return nil
        }
    }

    /// The value as plain data (for `tojson`), or nil if it has none.
    var templateValue: TemplateValue? {
        switch self {
        case .none: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let a), .tuple(let a):
            var out: [TemplateValue] = []
            for v in a { guard let t = v.templateValue else { return nil }; out.append(t) }
            return .array(out)
        case .dict(let d):
            var out: [(key: String, value: TemplateValue)] = []
            for (k, v) in d.pairs {
                guard let t = v.templateValue, let key = k.jsonKey else { return nil }
                out.append((key, t))
            }
            return .object(out)
        case .namespace(let n):
            return Value.dict(n.attributes).templateValue
        default: return nil
        }
    }
}
