/// Jinja's built-in filters (the subset chat templates use), with transformers' `tojson`.
extension Interpreter {
    static let supportedFilters: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "forceescape",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
        "unique", "upper", "wordcount",
    ]

    func applyFilter(_ name: String, _ v: Value, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        func seq(_ v: Value) throws -> [Value] {
            guard let items = v.iterated else { throw Self.err("'\(v.typeName)' object is not iterable", loc) }
            return items
        }
        func boolArg(_ i: Int, _ n: String, _ def: Bool) -> Bool { args.get(i, n)?.truthy ?? def }
        func strOf(_ v: Value) -> String { v.str }

        switch name {
        case "safe":
            return v
        case "e", "escape", "forceescape":
            var out = ""
            for c in v.str.unicodeScalars {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.unicodeScalars.append(c)
                }
            }
            return .string(out)
        case "string":
            return .string(v.str)
        case "trim":
            var chars: String? = nil
            if case .string(let c)? = args.get(0, "chars") { chars = c }
            return .string(Self.pyStrip(v.str, chars, left: true, right: true))
        case "upper": return .string(v.str.uppercased())
        case "lower": return .string(v.str.lowercased())
        case "capitalize": return .string(Self.pyCapitalize(v.str))
        case "title": return .string(Self.pyTitle(v.str))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let l), .tuple(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .namespace(let n): return .int(n.attributes.count)
            case .undefined: return .int(0)
            default: throw Self.err("object of type '\(v.typeName)' has no len()", loc)
            }
        case "wordcount":
            return .int(Self.pySplit(v.str, nil, -1).count)
        case "default", "d":
            let def = args.get(0, "default_value") ?? .string("")
            let boolean = boolArg(1, "boolean", false)
            if v.isUndefined || (boolean && !v.truthy) { return def }
            return v
        case "first":
            if case .undefined = v { return .undefined("no first item") }
            return try seq(v).first ?? .undefined("no first item, sequence was empty")
        case "last":
            if case .undefined = v { return .undefined("no last item") }
            return try seq(v).last ?? .undefined("no last item, sequence was empty")
        case "list":
            return .list(try seq(v))
        case "items":
            switch v {
            case .undefined: return .list([])
            case .dict(let d): return .list(d.pairs.map { .tuple([$0.0, $0.1]) })
            case .namespace(let n): return .list(n.attributes.pairs.map { .tuple([$0.0, $0.1]) })
            default: throw Self.err("can only get item pairs from a mapping, not \(v.typeName)", loc)
            }
        case "join":
            let sep = args.get(0, "d")?.str ?? ""
            var items = try seq(v)
            if let attr = args.get(1, "attribute"), !attr.isNone {
                items = try items.map { try attribute($0, attr, loc) }
            }
            let strs = items.map(strOf)
            let (seps, o1) = sep.utf8.count.multipliedReportingOverflow(by: max(0, strs.count - 1))
            try Self.checkSize(o1 ? -1 : strs.reduce(seps) { $0 + $1.utf8.count }, "joined string", loc)
            return .string(strs.joined(separator: sep))
        case "replace":
            guard let old = args.get(0, "old")?.str, let new = args.get(1, "new")?.str else {
                throw Self.err("replace needs 'old' and 'new'", loc)
            }
            var count = -1
            if case .int(let c)? = args.get(2, "count") { count = c }
            try Self.checkReplace(v.str, old, new, count, loc)
            return .string(Self.pyReplace(v.str, old, new, count))
        case "indent":
            var indention = "    "
            switch args.get(0, "width") {
            case .string(let s)?: indention = s
            case .int(let w)?:
                guard w <= TemplateLimits.maxIndent else { throw Self.err("indent width \(w) is too large (the sandbox allows \(TemplateLimits.maxIndent))", loc) }
                indention = String(repeating: " ", count: max(0, w))
            default: break
            }
            let first = boolArg(1, "first", false)
            let blank = boolArg(2, "blank", false)
            let s = v.str + "\n"
            var lines = Self.pySplitLines(s)
            var rv: String
            if blank {
                rv = lines.joined(separator: "\n" + indention)
            } else {
                rv = lines.isEmpty ? "" : lines.removeFirst()
                if !lines.isEmpty {
                    rv += "\n" + lines.map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n")
                }
            }
            if first { rv = indention + rv }
            return .string(rv)
        case "tojson":
            var json = PythonJSON()
            json.ensureASCII = boolArg(1, "ensure_ascii", false)
            switch args.get(0, "indent") {
            case .int(let n)?:
                guard n <= TemplateLimits.maxIndent else { throw Self.err("tojson indent \(n) is too large (the sandbox allows \(TemplateLimits.maxIndent))", loc) }
                json.indent = String(repeating: " ", count: max(0, n))
            case .string(let s)?:
                guard s.utf8.count <= TemplateLimits.maxIndent else { throw Self.err("tojson indent is too long (the sandbox allows \(TemplateLimits.maxIndent) characters)", loc) }
                json.indent = s
            default: break
            }
            json.itemSeparator = json.indent == nil ? ", " : ","
            if let sep = args.get(2, "separators"), !sep.isNone {
                guard let parts = sep.iterated, parts.count == 2, case .string(let a) = parts[0], case .string(let b) = parts[1] else {
                    throw Self.err("tojson separators must be a pair of strings", loc)
                }
                json.itemSeparator = a
                json.keySeparator = b
            }
            json.sortKeys = boolArg(3, "sort_keys", false)
            do {
                return .string(try json.dumps(v))
            } catch let e as PythonJSON.NotSerializable {
                if v.isUndefined { throw undefinedError(v, loc) }
                throw Self.err("Object of type \(e.typeName) is not JSON serializable", loc)
            }
        case "int":
            let def = args.get(0, "default") ?? .int(0)
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return d.isFinite ? .int(Int(d)) : def
            case .string(let s):
                let t = Self.pyStrip(s, nil, left: true, right: true).replacingAll("_", with: "")
                if let i = Int(t) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return def
            default: return def
            }
        case "float":
            let def = args.get(0, "default") ?? .double(0)
            switch v {
            case .double: return v
            case .int(let i): return .double(Double(i))
            case .bool(let b): return .double(b ? 1 : 0)
            case .string(let s): return Double(Self.pyStrip(s, nil, left: true, right: true)).map { .double($0) } ?? def
            default: return def
            }
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw Self.err("bad operand type for abs(): '\(v.typeName)'", loc)
            }
        case "round":
            guard let x = v.numeric else { throw Self.err("round needs a number", loc) }
            var precision = 0
            if case .int(let p)? = args.get(0, "precision") { precision = p }
            let method = args.get(1, "method")?.str ?? "common"
            let scale = pow10(precision)
            let y = x * scale
            let r: Double
            switch method {
            case "ceil": r = y.rounded(.up)
            case "floor": r = y.rounded(.down)
            default: r = y.rounded(.toNearestOrAwayFromZero)
            }
            return .double(r / scale)
        case "reverse":
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try seq(v).reversed())
        case "sum":
            var items = try seq(v)
            if let attr = args.get(0, "attribute"), !attr.isNone { items = try items.map { try attribute($0, attr, loc) } }
            var total = args.get(1, "start") ?? .int(0)
            for item in items { total = try binary("+", total, item, loc) }
            return total
        case "min", "max":
            var items = try seq(v)
            let cs = boolArg(0, "case_sensitive", false)
            if let attr = args.get(1, "attribute"), !attr.isNone { items = try items.map { try attribute($0, attr, loc) } }
            guard var best = items.first else { return .undefined("no \(name) item, sequence was empty") }
            for item in items.dropFirst() {
                let lt = try sortLess(item, best, caseSensitive: cs, loc)
                if name == "min" ? lt : try sortLess(best, item, caseSensitive: cs, loc) { best = item }
            }
            return best
        case "sort":
            let reverse = boolArg(0, "reverse", false)
            let cs = boolArg(1, "case_sensitive", false)
            let attr = args.get(2, "attribute")
            let items = try seq(v)
            let keys = try items.map { item -> Value in
                guard let attr, !attr.isNone else { return item }
                return try attribute(item, attr, loc)
            }
            var idx = Array(items.indices)
            var failure: TemplateError? = nil
            try mergeSort(&idx) { a, b in
                do {
                    return reverse ? try sortLess(keys[b], keys[a], caseSensitive: cs, loc)
                                   : try sortLess(keys[a], keys[b], caseSensitive: cs, loc)
                } catch let e as TemplateError { failure = e; return false }
            }
            if let failure { throw failure }
            return .list(idx.map { items[$0] })
        case "unique":
            let cs = boolArg(0, "case_sensitive", false)
            let attr = args.get(1, "attribute")
            var seen: [Value] = []
            var out: [Value] = []
            for item in try seq(v) {
                var key = item
                if let attr, !attr.isNone { key = try attribute(item, attr, loc) }
                if !cs, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { $0.equals(key) }) { seen.append(key); out.append(item) }
            }
            return .list(out)
        case "dictsort":
            guard case .dict(let d) = v else { throw Self.err("dictsort needs a mapping", loc) }
            let cs = boolArg(0, "case_sensitive", false)
            let byValue = args.get(1, "by")?.str == "value"
            let reverse = boolArg(2, "reverse", false)
            var pairs = d.pairs
            var failure: TemplateError? = nil
            try mergeSort(&pairs) { a, b in
                do {
                    let (x, y) = byValue ? (a.1, b.1) : (a.0, b.0)
                    return reverse ? try sortLess(y, x, caseSensitive: cs, loc) : try sortLess(x, y, caseSensitive: cs, loc)
                } catch let e as TemplateError { failure = e; return false }
            }
            if let failure { throw failure }
            return .list(pairs.map { .tuple([$0.0, $0.1]) })
        case "attr":
            guard case .string(let n)? = args.get(0, "name") else { throw Self.err("attr needs a name", loc) }
            return try getAttr(v, n, loc)
        case "map":
            let items = try seq(v)
            if let attr = args.keywords.first(where: { $0.0 == "attribute" })?.1 {
                let def = args.keywords.first(where: { $0.0 == "default" })?.1
                return .list(try items.map { item in
                    let r = try attribute(item, attr, loc)
                    if r.isUndefined, let def { return def }
                    return r
                })
            }
            guard case .string(let filterName)? = args.positional.first else { throw Self.err("map needs a filter name or attribute=", loc) }
            let rest = CallArgs(positional: Array(args.positional.dropFirst()), keywords: args.keywords)
            return .list(try items.map { try applyFilter(filterName, $0, rest, loc) })
        case "select", "reject":
            let items = try seq(v)
            let keep = name == "select"
            guard case .string(let testName)? = args.positional.first else {
                return .list(items.filter { $0.truthy == keep })
            }
            let targs = Array(args.positional.dropFirst())
            return .list(try items.filter { try applyTest(testName, $0, targs, loc) == keep })
        case "selectattr", "rejectattr":
            let items = try seq(v)
            let keep = name == "selectattr"
            guard let attr = args.positional.first else { throw Self.err("\(name) needs an attribute name", loc) }
            if args.positional.count < 2 {
                return .list(try items.filter { try attribute($0, attr, loc).truthy == keep })
            }
            guard case .string(let testName) = args.positional[1] else { throw Self.err("\(name) test name must be a string", loc) }
            let targs = Array(args.positional.dropFirst(2))
            return .list(try items.filter { try applyTest(testName, try attribute($0, attr, loc), targs, loc) == keep })
        default:
            throw TemplateError.unsupported(construct: "the '\(name)' filter", line: loc.line, column: loc.column)
        }
    }

    private func pow10(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<abs(n) { r *= 10 }
        return n < 0 ? 1 / r : r
    }

    /// `environment.getitem` along a dotted attribute path (`'a.b'` or an integer index).
    func attribute(_ v: Value, _ path: Value, _ loc: SourceLocation) throws -> Value {
        switch path {
        case .int:
            return try getItem(v, path, loc)
        case .string(let s):
            var cur = v
            for part in s.split(separator: ".", omittingEmptySubsequences: false) {
                if cur.isUndefined { return cur }
                let key: Value = Int(part).map { .int($0) } ?? .string(String(part))
                cur = try getItem(cur, key, loc)
            }
            return cur
        default:
            throw Self.err("attribute must be a string or an integer", loc)
        }
    }

    /// Jinja's sort key comparison (strings lowercased unless case-sensitive).
    func sortLess(_ a: Value, _ b: Value, caseSensitive: Bool, _ loc: SourceLocation) throws -> Bool {
        var x = a, y = b
        if !caseSensitive {
            if case .string(let s) = x { x = .string(s.lowercased()) }
            if case .string(let s) = y { y = .string(s.lowercased()) }
        }
        guard let r = x.lessThan(y) else {
            throw Self.err("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'", loc)
        }
        return r
    }

    /// A stable sort (Python's sort is stable).
    func mergeSort<T>(_ a: inout [T], _ less: (T, T) throws -> Bool) throws {
        if a.count < 2 { return }
        let mid = a.count / 2
        var l = Array(a[..<mid]), r = Array(a[mid...])
        try mergeSort(&l, less)
        try mergeSort(&r, less)
        var i = 0, j = 0, k = 0
        while i < l.count && j < r.count {
            if try less(r[j], l[i]) { a[k] = r[j]; j += 1 } else { a[k] = l[i]; i += 1 }
            k += 1
        }
        while i < l.count { a[k] = l[i]; i += 1; k += 1 }
        while j < r.count { a[k] = r[j]; j += 1; k += 1 }
    }
}
