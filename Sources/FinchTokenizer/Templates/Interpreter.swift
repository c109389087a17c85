import Foundation

/// A variable scope. Loop bodies and macro calls get their own; `if` does not (as in Jinja).
final class Scope {
    var vars: [String: Value] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var s: Scope? = self
        while let c = s {
            if let v = c.vars[name] { return v }
            s = c.parent
        }
        return nil
    }
}

/// Arguments of a filter, test, method or function call.
struct CallArgs {
    var positional: [Value]
    var keywords: [(String, Value)]

    /// The argument at `index` or named `name`.
    func get(_ index: Int, _ name: String) -> Value? {
        if let kw = keywords.first(where: { $0.0 == name }) { return kw.1 }
        return index < positional.count ? positional[index] : nil
    }
}

/// Evaluates a parsed template.
final class Interpreter {
    enum Flow { case normal, breakLoop, continueLoop }

    let root: Scope
    private var depth = 0
    /// Work done so far (statements, expressions, loop iterations): a template that goes past
    /// `TemplateLimits.maxSteps` stops with an error instead of running for ever.
    private var steps = 0

    init(variables: [String: Value]) {
        root = Scope(parent: nil)
        root.vars = variables
    }

    static func err(_ msg: String, _ l: SourceLocation) -> TemplateError {
        .runtime(message: msg, line: l.line, column: l.column)
    }

    /// Counts one unit of work.
    @inline(__always)
    private func tick(_ l: SourceLocation? = nil) throws {
        steps += 1
        if steps > TemplateLimits.maxSteps {
            throw Self.err("the template ran too long (the sandbox allows \(TemplateLimits.maxSteps) steps)", l ?? SourceLocation(line: 0, column: 0))
        }
    }

    /// Throws when a string or list about to be made would hold more than `TemplateLimits.maxLength`
    /// characters (UTF-8 bytes) or items, before it is made.
    static func checkSize(_ n: Int, _ what: String, _ l: SourceLocation) throws {
        if n < 0 || n > TemplateLimits.maxLength {
            throw err("the \(what) would be too large (the sandbox allows \(TemplateLimits.maxLength) characters or items)", l)
        }
    }

    // MARK: - Statements

    func render(_ nodes: [Node], _ scope: Scope, into out: inout String) throws -> Flow {
        for node in nodes {
            let flow = try render(node, scope, into: &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func render(_ node: Node, _ scope: Scope, into out: inout String) throws -> Flow {
        try tick()
        switch node {
        case .text(let s):
            try Self.checkSize(out.utf8.count + s.utf8.count, "output", SourceLocation(line: 0, column: 0))
            out += s
        case .output(let e):
            let v = try eval(e, scope).str
            try Self.checkSize(out.utf8.count + v.utf8.count, "output", SourceLocation(line: 0, column: 0))
            out += v
        case let .ifBlock(branches, otherwise):
            for (cond, body) in branches where try eval(cond, scope).truthy {
                return try render(body, scope, into: &out)
            }
            if let otherwise { return try render(otherwise, scope, into: &out) }
        case let .forLoop(target, iterExpr, filter, body, otherwise, loc):
            try renderFor(target: target, iterExpr: iterExpr, filter: filter, body: body, otherwise: otherwise,
                          loc: loc, scope, into: &out)
        case let .set(target, e, loc):
            try assign(target, try eval(e, scope), scope, loc)
        case let .setBlock(target, body, filters, loc):
            var buf = ""
            _ = try render(body, Scope(parent: scope), into: &buf)
            var v = Value.string(buf)
            for f in filters { v = try applyFilter(f.0, v, try evalArgs(f.1, f.2, scope), f.3) }
            try assign(target, v, scope, loc)
        case let .macro(name, params, body):
            scope.vars[name] = .macro(Macro(name: name, params: params, body: body))
        case let .filterBlock(filters, body):
            var buf = ""
            _ = try render(body, scope, into: &buf)
            var v = Value.string(buf)
            for f in filters { v = try applyFilter(f.0, v, try evalArgs(f.1, f.2, scope), f.3) }
            out += v.str
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .generation(let body):
            return try render(body, scope, into: &out)
        }
        return .normal
    }

    private func renderFor(target: AssignTarget, iterExpr: Expr, filter: Expr?, body: [Node], otherwise: [Node]?,
                           loc: SourceLocation, _ scope: Scope, into out: inout String) throws {
        let iterable = try eval(iterExpr, scope)
        guard var items = iterable.iterated else {
            throw Self.err("'\(iterable.typeName)' object is not iterable", loc)
        }
        if let filter {
            var kept: [Value] = []
            for item in items {
                let s = Scope(parent: scope)
                try assign(target, item, s, loc)
                if try eval(filter, s).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let otherwise { _ = try render(otherwise, scope, into: &out) }
            return
        }
        let info = LoopInfo(items: items)
        for (k, item) in items.enumerated() {
            try tick(loc)
            info.index0 = k
            let s = Scope(parent: scope)
            s.vars["loop"] = .loop(info)
            try assign(target, item, s, loc)
            let flow = try render(body, s, into: &out)
            if flow == .breakLoop { break }
        }
    }

    private func assign(_ target: AssignTarget, _ value: Value, _ scope: Scope, _ loc: SourceLocation) throws {
        switch target {
        case .name(let n):
            scope.vars[n] = value
        case .tuple(let targets):
            guard let items = value.iterated else {
                throw Self.err("cannot unpack a non-iterable \(value.typeName) object", loc)
            }
            guard items.count == targets.count else {
                throw Self.err("cannot unpack \(items.count) values into \(targets.count) names", loc)
            }
            for (t, v) in zip(targets, items) { try assign(t, v, scope, loc) }
        case let .attribute(obj, attr):
            guard case .namespace(let ns)? = scope.lookup(obj) else {
                throw Self.err("cannot assign attribute on non-namespace object '\(obj)'", loc)
            }
            ns.attributes[attr] = value
        }
    }

    // MARK: - Expressions

    func evalArgs(_ args: [Expr], _ kwargs: [(String, Expr)], _ scope: Scope) throws -> CallArgs {
        CallArgs(positional: try args.map { try eval($0, scope) }, keywords: try kwargs.map { ($0.0, try eval($0.1, scope)) })
    }

    func eval(_ e: Expr, _ scope: Scope) throws -> Value {
        try tick()
        switch e {
        case .literal(let v):
            return v
        case let .name(n, _):
            if let v = scope.lookup(n) { return v }
            if let b = Builtin(rawValue: n) { return .builtin(b) }
            return .undefined("'\(n)' is undefined")
        case .list(let items):
            return .list(try items.map { try eval($0, scope) })
        case .tuple(let items):
            return .tuple(try items.map { try eval($0, scope) })
        case .dict(let pairs):
            var d = OrderedDict()
            for (k, v) in pairs { d[try eval(k, scope)] = try eval(v, scope) }
            return .dict(d)
        case let .getAttr(obj, name, loc):
            return try getAttr(try eval(obj, scope), name, loc)
        case let .getItem(obj, key, loc):
            return try getItem(try eval(obj, scope), try eval(key, scope), loc)
        case let .slice(obj, start, stop, step, loc):
            let o = try eval(obj, scope)
            return try slice(o, try start.map { try eval($0, scope) }, try stop.map { try eval($0, scope) },
                             try step.map { try eval($0, scope) }, loc)
        case let .call(callee, args, kwargs, loc):
            let f = try eval(callee, scope)
            return try call(f, try evalArgs(args, kwargs, scope), loc)
        case let .filter(value, name, args, kwargs, loc):
            let v = try eval(value, scope)
            return try applyFilter(name, v, try evalArgs(args, kwargs, scope), loc)
        case let .test(value, name, args, negated, loc):
            let v = try eval(value, scope)
            let r = try applyTest(name, v, try args.map { try eval($0, scope) }, loc)
            return .bool(negated ? !r : r)
        case .not(let x):
            return .bool(!(try eval(x, scope).truthy))
        case let .neg(x, loc):
            let v = try eval(x, scope)
            switch v {
            case .int(let i): return .int(-i)
            case .double(let d): return .double(-d)
            case .bool(let b): return .int(b ? -1 : 0)
            default: throw operandError("unary -", v, nil, loc)
            }
        case let .pos(x, loc):
            let v = try eval(x, scope)
            switch v {
            case .int, .double: return v
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw operandError("unary +", v, nil, loc)
            }
        case let .binary(op, a, b, loc):
            return try binary(op, try eval(a, scope), try eval(b, scope), loc)
        case let .and(a, b):
            let l = try eval(a, scope)
            return l.truthy ? try eval(b, scope) : l
        case let .or(a, b):
            let l = try eval(a, scope)
            return l.truthy ? l : try eval(b, scope)
        case let .concat(parts, loc):
            let strs = try parts.map { try eval($0, scope).str }
            try Self.checkSize(strs.reduce(0) { $0 + $1.utf8.count }, "string", loc)
            return .string(strs.joined())
        case let .compare(first, ops, loc):
            var left = try eval(first, scope)
            for (op, rightExpr) in ops {
                let right = try eval(rightExpr, scope)
                if !(try compare(op, left, right, loc)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case let .condExpr(test, then, otherwise):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undefined("the inline if expression evaluated to false and no else section was defined")
        }
    }

    func undefinedError(_ v: Value, _ loc: SourceLocation) -> TemplateError {
        if case .undefined(let msg) = v { return Self.err(msg, loc) }
        return Self.err("undefined value", loc)
    }

    private func operandError(_ op: String, _ a: Value, _ b: Value?, _ loc: SourceLocation) -> TemplateError {
        if a.isUndefined { return undefinedError(a, loc) }
        if let b, b.isUndefined { return undefinedError(b, loc) }
        if let b {
            return Self.err("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'", loc)
        }
        return Self.err("bad operand type for \(op): '\(a.typeName)'", loc)
    }

    func binary(_ op: String, _ a: Value, _ b: Value, _ loc: SourceLocation) throws -> Value {
        switch (op, a, b) {
        case let ("+", .int(x), .int(y)): return .int(x &+ y)
        case let ("+", .string(x), .string(y)):
            try Self.checkSize(x.utf8.count + y.utf8.count, "string", loc)
            return .string(x + y)
        case let ("+", .list(x), .list(y)):
            try Self.checkSize(x.count + y.count, "list", loc)
            return .list(x + y)
        case let ("+", .tuple(x), .tuple(y)):
            try Self.checkSize(x.count + y.count, "tuple", loc)
            return .tuple(x + y)
        case let ("-", .int(x), .int(y)): return .int(x &- y)
        case let ("*", .int(x), .int(y)): return .int(x &* y)
        case let ("*", .string(s), .int(n)), let ("*", .int(n), .string(s)):
            let (total, overflow) = s.utf8.count.multipliedReportingOverflow(by: max(0, n))
            try Self.checkSize(overflow ? -1 : total, "string", loc)
            return .string(String(repeating: s, count: max(0, n)))
        case let ("*", .list(l), .int(n)), let ("*", .int(n), .list(l)):
            let (total, overflow) = l.count.multipliedReportingOverflow(by: max(0, n))
            try Self.checkSize(overflow ? -1 : total, "list", loc)
            return .list(Array([[Value]](repeating: l, count: max(0, n)).joined()))
        case let ("//", .int(x), .int(y)):
            guard y != 0 else { throw Self.err("integer division or modulo by zero", loc) }
            let q = x / y
            return .int((x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q)
        case let ("%", .int(x), .int(y)):
            guard y != 0 else { throw Self.err("integer division or modulo by zero", loc) }
            let r = x % y
            return .int(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
        case ("%", .string, _):
            throw TemplateError.unsupported(construct: "printf-style string formatting ('%' on a string)",
                                            line: loc.line, column: loc.column)
        case let ("**", .int(x), .int(y)) where y >= 0:
            // By squaring (a huge exponent must not loop for ever); wraps like the other int operations.
            var r = 1, base = x, e = y
            while e > 0 {
                if e & 1 == 1 { r = r &* base }
                base = base &* base
                e >>= 1
            }
            return .int(r)
        default:
            break
        }
        guard let x = a.numeric, let y = b.numeric else {
            throw operandError(op, a, b, loc)
        }
        let bothInt = a.isIntLike && b.isIntLike
        switch op {
        case "+": return bothInt ? .int(Int(x) &+ Int(y)) : .double(x + y)
        case "-": return bothInt ? .int(Int(x) &- Int(y)) : .double(x - y)
        case "*": return bothInt ? .int(Int(x) &* Int(y)) : .double(x * y)
        case "/":
            guard y != 0 else { throw Self.err("division by zero", loc) }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw Self.err("float floor division by zero", loc) }
            if bothInt { return try binary("//", .int(Int(x)), .int(Int(y)), loc) }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw Self.err("float modulo", loc) }
            if bothInt { return try binary("%", .int(Int(x)), .int(Int(y)), loc) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
        case "**":
            return .double(pow(x, y))
        default:
            throw operandError(op, a, b, loc)
        }
    }

    func compare(_ op: String, _ a: Value, _ b: Value, _ loc: SourceLocation) throws -> Bool {
        switch op {
        case "==": return a.equals(b)
        case "!=": return !a.equals(b)
        case "in": return try contains(b, a, loc)
        case "notin": return !(try contains(b, a, loc))
        default:
            guard let lt = a.lessThan(b), let gt = b.lessThan(a) else {
                if a.isUndefined || b.isUndefined {
                    throw undefinedError(a.isUndefined ? a : b, loc)
                }
                let sym = ["<": "<", "<=": "<=", ">": ">", ">=": ">="][op] ?? op
                throw Self.err("'\(sym)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'", loc)
            }
            switch op {
            case "<": return lt
            case "<=": return !gt
            case ">": return gt
            default: return !lt
            }
        }
    }

    func contains(_ container: Value, _ item: Value, _ loc: SourceLocation) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else {
                throw Self.err("'in <string>' requires string as left operand, not \(item.typeName)", loc)
            }
            return sub.isEmpty || s.contains(sub)
        case .list(let l), .tuple(let l): return l.contains { $0.equals(item) }
        case .dict(let d): return d[item] != nil
        case .namespace(let n): return n.attributes[item] != nil
        case .undefined: return false
        default:
            throw Self.err("argument of type '\(container.typeName)' is not iterable", loc)
        }
    }

    // MARK: - Attributes and items

    static let dictMethods: Set<String> = ["items", "keys", "values", "get", "copy"]
    static let unsafeMethods: Set<String> = ["append", "extend", "insert", "pop", "remove", "clear", "update",
                                             "setdefault", "popitem", "sort", "reverse"]
    static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                                             "endswith", "upper", "lower", "title", "capitalize", "replace", "find",
                                             "rfind", "index", "count", "join", "isdigit", "isalpha", "isalnum",
                                             "isspace", "islower", "isupper", "removeprefix", "removesuffix", "format",
                                             "zfill", "swapcase", "casefold", "center", "ljust", "rjust"]

    func getAttr(_ obj: Value, _ name: String, _ loc: SourceLocation) throws -> Value {
        switch obj {
        case .undefined:
            throw undefinedError(obj, loc)
        case .dict(let d):
            if Self.dictMethods.contains(name) || Self.unsafeMethods.contains(name) { return .boundMethod(receiver: obj, name: name) }
            return d[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let n):
            return n.attributes[name] ?? .undefined("'Namespace object' has no attribute '\(name)'")
        case .string:
            if Self.stringMethods.contains(name) { return .boundMethod(receiver: obj, name: name) }
        case .list, .tuple:
            if ["index", "count"].contains(name) || Self.unsafeMethods.contains(name) {
                return .boundMethod(receiver: obj, name: name)
            }
        case .loop(let info):
            let k = info.index0
            switch name {
            case "index": return .int(k + 1)
            case "index0": return .int(k)
            case "revindex": return .int(info.length - k)
            case "revindex0": return .int(info.length - k - 1)
            case "first": return .bool(k == 0)
            case "last": return .bool(k == info.length - 1)
            case "length": return .int(info.length)
            case "depth": return .int(1)
            case "depth0": return .int(0)
            case "previtem": return k > 0 ? info.items[k - 1] : .undefined("there is no previous item")
            case "nextitem": return k + 1 < info.length ? info.items[k + 1] : .undefined("there is no next item")
            case "cycle", "changed": return .boundMethod(receiver: obj, name: name)
            default: break
            }
        default:
            break
        }
        return .undefined("'\(obj.typeName) object' has no attribute '\(name)'")
    }

    func getItem(_ obj: Value, _ key: Value, _ loc: SourceLocation) throws -> Value {
        switch (obj, key) {
        case (.undefined, _):
            throw undefinedError(obj, loc)
        case let (.dict(d), k):
            if let v = d[k] { return v }
        case let (.list(a), .int(i)), let (.tuple(a), .int(i)):
            let j = i < 0 ? a.count + i : i
            if j >= 0 && j < a.count { return a[j] }
            return .undefined("\(obj.typeName) object has no element \(i)")
        case let (.list(a), .bool(b)), let (.tuple(a), .bool(b)):
            let j = b ? 1 : 0
            if j < a.count { return a[j] }
        case let (.string(s), .int(i)):
            let scalars = Array(s.unicodeScalars)
            let j = i < 0 ? scalars.count + i : i
            if j >= 0 && j < scalars.count { return .string(String(scalars[j])) }
            return .undefined("str object has no element \(i)")
        case let (.namespace(n), k):
            if let v = n.attributes[k] { return v }
        default:
            break
        }
        if case .string(let name) = key {
            return try getAttr(obj, name, loc)
        }
        return .undefined("'\(obj.typeName) object' has no element \(key.repr)")
    }

    /// Python slice semantics on lists, tuples and strings.
    func slice(_ obj: Value, _ start: Value?, _ stop: Value?, _ step: Value?, _ loc: SourceLocation) throws -> Value {
        func int(_ v: Value?) throws -> Int? {
            guard let v, !v.isNone else { return nil }
            guard case .int(let i) = v else { throw Self.err("slice indices must be integers or None", loc) }
            return i
        }
        let st = try int(step) ?? 1
        guard st != 0 else { throw Self.err("slice step cannot be zero", loc) }
        func indices(_ n: Int) throws -> [Int] {
            var a = try int(start), b = try int(stop)
            if st > 0 {
                var lo = a ?? 0, hi = b ?? n
                if lo < 0 { lo = max(0, lo + n) } else { lo = min(lo, n) }
                if hi < 0 { hi = max(0, hi + n) } else { hi = min(hi, n) }
                return lo < hi ? Array(stride(from: lo, to: hi, by: st)) : []
            } else {
                if a == nil { a = n - 1 } else if a! < 0 { a = max(-1, a! + n) } else { a = min(a!, n - 1) }
                if b == nil { b = -1 } else if b! < 0 { b = max(-1, b! + n) } else { b = min(b!, n - 1) }
                return a! > b! ? Array(stride(from: a!, to: b!, by: st)) : []
            }
        }
        switch obj {
        case .list(let l): return .list(try indices(l.count).map { l[$0] })
        case .tuple(let l): return .tuple(try indices(l.count).map { l[$0] })
        case .string(let s):
            let sc = Array(s.unicodeScalars)
            var v = String.UnicodeScalarView()
            for i in try indices(sc.count) { v.append(sc[i]) }
            return .string(String(v))
        case .undefined: throw undefinedError(obj, loc)
        default: throw Self.err("'\(obj.typeName)' object is not subscriptable", loc)
        }
    }

    // MARK: - Calls

    func call(_ f: Value, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        switch f {
        case .macro(let m):
            return try callMacro(m, args, loc)
        case .builtin(let b):
            return try callBuiltin(b, args, loc)
        case let .boundMethod(receiver, name):
            return try callMethod(receiver, name, args, loc)
        case .undefined:
            throw undefinedError(f, loc)
        default:
            throw Self.err("'\(f.typeName)' object is not callable", loc)
        }
    }

    private func callMacro(_ m: Macro, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        guard depth < TemplateLimits.maxMacroDepth else { throw Self.err("macro recursion is too deep (the sandbox allows \(TemplateLimits.maxMacroDepth) levels)", loc) }
        if args.positional.count > m.params.count {
            throw Self.err("macro '\(m.name)' takes not more than \(m.params.count) argument(s)", loc)
        }
        let s = Scope(parent: root)
        for (k, (pname, def)) in m.params.enumerated() {
            if let v = args.get(k, pname) {
                s.vars[pname] = v
            } else if let def {
                s.vars[pname] = try eval(def, s)
            } else {
                s.vars[pname] = .undefined("parameter '\(pname)' was not provided")
            }
        }
        for (k, _) in args.keywords where !m.params.contains(where: { $0.0 == k }) {
            throw Self.err("macro '\(m.name)' has no parameter named '\(k)'", loc)
        }
        depth += 1
        defer { depth -= 1 }
        var buf = ""
        _ = try render(m.body, s, into: &buf)
        return .string(buf)
    }

    private func callBuiltin(_ b: Builtin, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        switch b {
        case .raiseException:
            let msg = args.get(0, "message")?.str ?? ""
            throw TemplateError.raised(message: msg, line: loc.line, column: loc.column)
        case .range:
            let ints = try args.positional.map { v -> Int in
                guard case .int(let i) = v else { throw Self.err("range() arguments must be integers", loc) }
                return i
            }
            var start = 0, stop = 0, step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw Self.err("range expected 1 to 3 arguments, got \(ints.count)", loc)
            }
            guard step != 0 else { throw Self.err("range() arg 3 must not be zero", loc) }
            // The length first (in Double: no overflow), so a huge range is refused before it is made.
            let span = step > 0 ? Double(stop) - Double(start) : Double(start) - Double(stop)
            let length = span <= 0 ? 0 : (span / Double(step.magnitude)).rounded(.up)
            guard length <= 100_000 else { throw Self.err("range too big (the sandbox allows 100000 items)", loc) }
            let r = step > 0 ? (start < stop ? Array(stride(from: start, to: stop, by: step)) : [])
                             : (start > stop ? Array(stride(from: start, to: stop, by: step)) : [])
            return .list(r.map { .int($0) })
        case .namespace:
            var d = OrderedDict()
            for p in args.positional {
                switch p {
                case .dict(let src): for (k, v) in src.pairs { d[k] = v }
                case .list(let items), .tuple(let items):
                    for item in items {
                        guard let kv = item.iterated, kv.count == 2 else {
                            throw Self.err("namespace() positional items must be pairs", loc)
                        }
                        d[kv[0]] = kv[1]
                    }
                default: throw Self.err("namespace() takes a mapping or pairs", loc)
                }
            }
            for (k, v) in args.keywords { d[k] = v }
            return .namespace(Namespace(d))
        case .dict:
            var d = OrderedDict()
            if let p = args.positional.first, case .dict(let src) = p { for (k, v) in src.pairs { d[k] = v } }
            for (k, v) in args.keywords { d[k] = v }
            return .dict(d)
        case .strftimeNow:
            guard case .string(let fmt)? = args.get(0, "format") else {
                throw Self.err("strftime_now() needs a format string", loc)
            }
            return .string(Self.strftimeNow(fmt))
        case .joiner, .cycler, .lipsum:
            throw TemplateError.unsupported(construct: "the '\(b.rawValue)()' function", line: loc.line, column: loc.column)
        }
    }

    /// `datetime.now().strftime(format)` via the C library.
    static func strftimeNow(_ format: String) -> String {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [Int8](repeating: 0, count: 512)
        let n = strftime(&buf, buf.count, format, &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Value {
    var isIntLike: Bool {
        switch self { case .bool, .int: return true; default: return false }
    }
}

/// Bounds on what a template may do, so that a chat template from a downloaded model cannot run
/// for ever or exhaust memory (it cannot read files or the environment at all: there is no
/// such function or filter). Parsing bounds nesting; rendering bounds work and sizes.
public enum TemplateLimits {
    /// Statements, expressions and loop iterations one render may evaluate.
    public static let maxSteps = 2_000_000
    /// Characters (UTF-8 bytes) of a string, or items of a list, including the output.
    public static let maxLength = 1 << 24
    /// Nesting of blocks and expressions (parentheses, unary operators, `not`, literals).
    public static let maxNesting = 100
    /// Macro calls in progress at once (recursion).
    public static let maxMacroDepth = 64
    /// Width of `indent` and `tojson(indent=...)`.
    public static let maxIndent = 1024
}
