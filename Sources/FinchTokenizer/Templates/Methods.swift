/// Python methods on strings, dicts and lists that chat templates call (`.strip()`, `.items()`, ...),
/// limited to the ones the sandbox allows (no mutation).
extension Interpreter {
    func callMethod(_ receiver: Value, _ name: String, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        if Self.unsafeMethods.contains(name) {
            throw Self.err("access to the mutating method '\(name)' of a \(receiver.typeName) is unsafe (the sandbox forbids it)", loc)
        }
        switch receiver {
        case .string(let s): return try stringMethod(s, name, args, loc)
        case .dict(let d):
            switch name {
            case "items": return .list(d.pairs.map { .tuple([$0.0, $0.1]) })
            case "keys": return .list(d.keys)
            case "values": return .list(d.values)
            case "get":
                guard let k = args.get(0, "key") else { throw Self.err("get() needs a key", loc) }
                return d[k] ?? args.get(1, "default") ?? .none
            case "copy": return receiver
            default: break
            }
        case .list(let l), .tuple(let l):
            switch name {
            case "index":
                guard let x = args.get(0, "value"), let i = l.firstIndex(where: { $0.equals(x) }) else {
                    throw Self.err("value is not in list", loc)
                }
                return .int(i)
            case "count":
                guard let x = args.get(0, "value") else { throw Self.err("count() takes one argument", loc) }
                return .int(l.filter { $0.equals(x) }.count)
            default: break
            }
        case .loop(let info):
            if name == "cycle" {
                guard !args.positional.isEmpty else { throw Self.err("no items for cycling given", loc) }
                return args.positional[info.index0 % args.positional.count]
            }
            throw TemplateError.unsupported(construct: "loop.\(name)()", line: loc.line, column: loc.column)
        default: break
        }
        throw TemplateError.unsupported(construct: "the method '\(name)' of \(receiver.typeName)", line: loc.line, column: loc.column)
    }

    /// Python's `str.isspace` set for one scalar.
    static func isPySpace(_ c: Unicode.Scalar) -> Bool {
        if c.properties.isWhitespace { return true }
        return (0x1C...0x1F).contains(c.value)
    }

    static func pyStrip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        var sc = Array(s.unicodeScalars)[...]
        let set = chars.map { Set($0.unicodeScalars) }
        func strip(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isPySpace(c) }
        if left { while let f = sc.first, strip(f) { sc.removeFirst() } }
        if right { while let l = sc.last, strip(l) { sc.removeLast() } }
        var v = String.UnicodeScalarView(); v.append(contentsOf: sc)
        return String(v)
    }

    /// Python `str.split(sep, maxsplit)`.
    static func pySplit(_ s: String, _ sep: String?, _ maxsplit: Int) -> [String] {
        let sc = Array(s.unicodeScalars)
        func str(_ a: ArraySlice<Unicode.Scalar>) -> String { var v = String.UnicodeScalarView(); v.append(contentsOf: a); return String(v) }
        var out: [String] = []
        if let sep {
            let sp = Array(sep.unicodeScalars)
            var i = 0, start = 0
            // An empty separator is refused by the callers (Python: "empty separator").
            precondition(!sp.isEmpty, "pySplit with an empty separator")
            while i + sp.count <= sc.count {
                if (maxsplit < 0 || out.count < maxsplit) && sc[i..<i + sp.count].elementsEqual(sp) {
                    out.append(str(sc[start..<i])); i += sp.count; start = i
                } else { i += 1 }
            }
            out.append(str(sc[start...]))
            return out
        }
        var i = 0
        while i < sc.count {
            while i < sc.count && isPySpace(sc[i]) { i += 1 }
            if i >= sc.count { break }
            if maxsplit >= 0 && out.count >= maxsplit {
                var end = sc.count
                while end > i && isPySpace(sc[end - 1]) { end -= 1 }
                out.append(str(sc[i..<end])); break
            }
            var j = i
            while j < sc.count && !isPySpace(sc[j]) { j += 1 }
            out.append(str(sc[i..<j]))
            i = j
        }
        return out
    }

    /// Python `str.splitlines()`.
    static func pySplitLines(_ s: String) -> [String] {
        var out: [String] = []
        var cur = String.UnicodeScalarView()
        let sc = Array(s.unicodeScalars)
        var i = 0
        while i < sc.count {
            let c = sc[i]
            let isBreak = ["\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{85}", "\u{2028}", "\u{2029}"].contains(c)
            if isBreak {
                out.append(String(cur)); cur = String.UnicodeScalarView()
                if c == "\r" && i + 1 < sc.count && sc[i + 1] == "\n" { i += 1 }
            } else {
                cur.append(c)
            }
            i += 1
        }
        if !cur.isEmpty { out.append(String(cur)) }
        return out
    }

    static func pyCapitalize(_ s: String) -> String {
        guard let f = s.unicodeScalars.first else { return s }
        return String(f).uppercased() + String(s.unicodeScalars.dropFirst()).lowercased()
    }

    private func stringMethod(_ s: String, _ name: String, _ args: CallArgs, _ loc: SourceLocation) throws -> Value {
        func strArg(_ i: Int, _ n: String) throws -> String? {
            guard let v = args.get(i, n), !v.isNone else { return nil }
            guard case .string(let x) = v else { throw Self.err("\(name)() argument must be str, not \(v.typeName)", loc) }
            return x
        }
        func prefixes(_ v: Value?) throws -> [String] {
            switch v {
            case .string(let p)?: return [p]
            case .tuple(let items)?, .list(let items)?:
                return try items.map { guard case .string(let p) = $0 else { throw Self.err("\(name)() needs strings", loc) }; return p }
            default: throw Self.err("\(name)() argument must be str or a tuple of str", loc)
            }
        }
        switch name {
        case "strip": return .string(Self.pyStrip(s, try strArg(0, "chars"), left: true, right: true))
        case "lstrip": return .string(Self.pyStrip(s, try strArg(0, "chars"), left: true, right: false))
        case "rstrip": return .string(Self.pyStrip(s, try strArg(0, "chars"), left: false, right: true))
        case "split", "rsplit":
            var maxsplit = -1
            if case .int(let m)? = args.get(1, "maxsplit") { maxsplit = m }
            let sep = try strArg(0, "sep")
            if sep == "" { throw Self.err("empty separator", loc) }
            if name == "rsplit" && maxsplit >= 0 {
                // Split from the right: reverse, split, reverse back.
                let rev = String(String.UnicodeScalarView(s.unicodeScalars.reversed()))
                let rsep = sep.map { String(String.UnicodeScalarView($0.unicodeScalars.reversed())) }
                return .list(Self.pySplit(rev, rsep, maxsplit).reversed().map {
                    .string(String(String.UnicodeScalarView($0.unicodeScalars.reversed())))
                })
            }
            return .list(Self.pySplit(s, sep, maxsplit).map { .string($0) })
        case "splitlines": return .list(Self.pySplitLines(s).map { .string($0) })
        case "startswith": return .bool(try prefixes(args.get(0, "prefix")).contains { s.unicodeScalars.starts(with: $0.unicodeScalars) })
        case "endswith":
            return .bool(try prefixes(args.get(0, "suffix")).contains {
                s.unicodeScalars.reversed().starts(with: $0.unicodeScalars.reversed())
            })
        case "upper": return .string(s.uppercased())
        case "lower": return .string(s.lowercased())
        case "casefold": return .string(s.lowercased())
        case "swapcase":
            return .string(s.unicodeScalars.map { c -> String in
                let x = String(c)
                return c.properties.isUppercase ? x.lowercased() : c.properties.isLowercase ? x.uppercased() : x
            }.joined())
        case "title": return .string(Self.pyTitle(s))
        case "capitalize": return .string(Self.pyCapitalize(s))
        case "replace":
            guard let old = try strArg(0, "old"), let new = try strArg(1, "new") else { throw Self.err("replace() needs two strings", loc) }
            var count = -1
            if case .int(let c)? = args.get(2, "count") { count = c }
            try Self.checkReplace(s, old, new, count, loc)
            return .string(Self.pyReplace(s, old, new, count))
        case "find", "rfind", "index":
            guard let sub = try strArg(0, "sub") else { throw Self.err("\(name)() needs a string", loc) }
            let a = Array(s.unicodeScalars), b = Array(sub.unicodeScalars)
            var found = -1
            if b.count <= a.count {
                let range = Array(0...(a.count - b.count))
                for i in (name == "rfind" ? range.reversed() : range) where Array(a[i..<i + b.count]) == b { found = i; break }
            }
            if name == "index" && found < 0 { throw Self.err("substring not found", loc) }
            return .int(found)
        case "count":
            guard let sub = try strArg(0, "sub") else { throw Self.err("count() needs a string", loc) }
            if sub.isEmpty { return .int(s.unicodeScalars.count + 1) }
            return .int(Self.pySplit(s, sub, -1).count - 1)
        case "join":
            guard let items = args.get(0, "iterable")?.iterated else { throw Self.err("join() needs an iterable", loc) }
            return .string(try items.map { v -> String in
                guard case .string(let x) = v else { throw Self.err("sequence item: expected str instance, \(v.typeName) found", loc) }
                return x
            }.joined(separator: s))
        case "isdigit": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil && $0.properties.numericType != .numeric })
        case "isalpha": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
        case "isalnum": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
        case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(Self.isPySpace))
        case "islower": return .bool(s.contains { $0.isLetter } && s.lowercased() == s)
        case "isupper": return .bool(s.contains { $0.isLetter } && s.uppercased() == s)
        case "removeprefix":
            guard let p = try strArg(0, "prefix") else { return .string(s) }
            return .string(s.unicodeScalars.starts(with: p.unicodeScalars) ? String(String.UnicodeScalarView(s.unicodeScalars.dropFirst(p.unicodeScalars.count))) : s)
        case "removesuffix":
            guard let p = try strArg(0, "suffix"), !p.isEmpty else { return .string(s) }
            return .string(s.unicodeScalars.reversed().starts(with: p.unicodeScalars.reversed())
                ? String(String.UnicodeScalarView(s.unicodeScalars.dropLast(p.unicodeScalars.count))) : s)
        default:
            throw TemplateError.unsupported(construct: "the string method '\(name)'", line: loc.line, column: loc.column)
        }
    }

    /// Python `str.replace(old, new, count)`.
    /// Throws when `replace` would make a string past `TemplateLimits.maxLength` (counted first).
    static func checkReplace(_ s: String, _ old: String, _ new: String, _ count: Int, _ loc: SourceLocation) throws {
        guard new.utf8.count > old.utf8.count else { return }
        var n: Int
        if old.isEmpty {
            n = s.unicodeScalars.count + 1
        } else {
            // Non-overlapping occurrences, left to right, as Python counts them.
            let sc = Array(s.unicodeScalars), sp = Array(old.unicodeScalars)
            n = 0
            var i = 0
            while i + sp.count <= sc.count {
                var match = true
                for k in 0..<sp.count where sc[i + k] != sp[k] { match = false; break }
                if match { n += 1; i += sp.count } else { i += 1 }
            }
        }
        if count >= 0 { n = min(n, count) }
        let (grow, o) = n.multipliedReportingOverflow(by: new.utf8.count - old.utf8.count)
        try checkSize(o ? -1 : s.utf8.count + grow, "string", loc)
    }

    static func pyReplace(_ s: String, _ old: String, _ new: String, _ count: Int) -> String {
        if old.isEmpty {
            // Python inserts `new` between every character (and at both ends).
            var out = "", n = 0
            for c in s.unicodeScalars {
                if count < 0 || n < count { out += new; n += 1 }
                out.unicodeScalars.append(c)
            }
            if count < 0 || n < count { out += new }
            return out
        }
        let parts = pySplit(s, old, count)
        return parts.joined(separator: new)
    }

    /// Jinja's `title` filter (and close to Python `str.title`): words start after spaces and `-({[<`.
    static func pyTitle(_ s: String) -> String {
        var out = ""
        var startOfWord = true
        for c in s.unicodeScalars {
            let x = String(c)
            if isPySpace(c) || "-({[<".unicodeScalars.contains(c) {
                out += x; startOfWord = true
            } else if startOfWord {
                out += x.uppercased(); startOfWord = false
            } else {
                out += x.lowercased()
            }
        }
        return out
    }
}
