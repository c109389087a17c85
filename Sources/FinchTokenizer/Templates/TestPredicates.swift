/// Jinja's built-in tests (`x is defined`, `x is string`, ...).
extension Interpreter {
    static let supportedTests: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge",
        "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ]

    func applyTest(_ name: String, _ v: Value, _ args: [Value], _ loc: SourceLocation) throws -> Bool {
        func arg() throws -> Value {
            guard let a = args.first else { throw Self.err("the '\(name)' test needs an argument", loc) }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number": switch v { case .int, .double, .bool: return true; default: return false }
        case "string": if case .string = v { return true }; return false
        case "mapping": switch v { case .dict, .namespace: return true; default: return false }
        case "iterable":
            switch v { case .list, .tuple, .dict, .string, .undefined, .namespace: return true; default: return false }
        case "sequence":
            switch v { case .list, .tuple, .dict, .string: return true; default: return false }
        case "callable":
            switch v { case .macro, .builtin, .boundMethod: return true; default: return false }
        case "escaped": return false
        case "lower": if case .string(let s) = v { return s.lowercased() == s }; return false
        case "upper": if case .string(let s) = v { return s.uppercased() == s }; return false
        case "odd", "even":
            guard case .int(let i) = v else { throw Self.err("the '\(name)' test needs an integer", loc) }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard case .int(let i) = v, case .int(let n) = try arg(), n != 0 else {
                throw Self.err("divisibleby needs integers", loc)
            }
            return i % n == 0
        case "eq", "equalto", "==": return v.equals(try arg())
        case "ne", "!=": return !v.equals(try arg())
        case "lt", "lessthan", "<": return try compare("<", v, try arg(), loc)
        case "le", "<=": return try compare("<=", v, try arg(), loc)
        case "gt", "greaterthan", ">": return try compare(">", v, try arg(), loc)
        case "ge", ">=": return try compare(">=", v, try arg(), loc)
        case "in": return try contains(try arg(), v, loc)
        case "sameas":
            let a = try arg()
            switch (v, a) {
            case (.none, .none): return true
            case let (.bool(x), .bool(y)): return x == y
            case let (.namespace(x), .namespace(y)): return x === y
            default: return false
            }
        default:
            throw TemplateError.unsupported(construct: "the '\(name)' test", line: loc.line, column: loc.column)
        }
    }
}
