/// Recursive-descent parser following `jinja2.parser.Parser`'s grammar and precedence.
struct TemplateParser {
    private let tokens: [LexToken]
    private var i = 0
    /// Blocks and expressions open around the current token (bounded: see `TemplateLimits.maxNesting`).
    private var nesting = 0

    private mutating func enter() throws {
        nesting += 1
        if nesting > TemplateLimits.maxNesting {
            throw fail("the template nests too deeply (the sandbox allows \(TemplateLimits.maxNesting) levels)")
        }
    }

    init(tokens: [LexToken]) { self.tokens = tokens }

    private var current: LexToken { tokens[i] }
    private var loc: SourceLocation { tokens[i].loc }

    private func peek(_ k: Int = 1) -> LexToken { tokens[min(i + k, tokens.count - 1)] }

    private mutating func advance() { if i < tokens.count - 1 { i += 1 } }

    private func fail(_ msg: String, _ at: SourceLocation? = nil) -> TemplateError {
        let l = at ?? loc
        return .syntax(message: msg, line: l.line, column: l.column)
    }

    private func describe(_ t: TokenKind) -> String {
        switch t {
        case .data: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string: return "a string"
        case .integer, .float: return "a number"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    private func isOp(_ o: String) -> Bool { if case .op(o) = current.kind { return true }; return false }
    private func isName(_ n: String) -> Bool { if case .name(n) = current.kind { return true }; return false }

    private mutating func expectOp(_ o: String) throws {
        guard isOp(o) else { throw fail("expected '\(o)', got \(describe(current.kind))") }
        advance()
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else { throw fail("expected a name, got \(describe(current.kind))") }
        advance()
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw fail("expected '%}', got \(describe(current.kind))") }
        advance()
    }

    // MARK: - Statements

    mutating func parseTemplate() throws -> [Node] {
        let (body, end) = try subparse(until: [])
        if let end { throw fail("unexpected '\(end)' (no block is open)") }
        return body
    }

    /// Parses nodes until a block tag whose first name is in `until` (left unconsumed, after `{%`).
    private mutating func subparse(until: Set<String>) throws -> ([Node], String?) {
        var body: [Node] = []
        while true {
            switch current.kind {
            case .data(let s):
                body.append(.text(s)); advance()
            case .variableBegin:
                advance()
                let e = try parseTuple()
                guard current.kind == .variableEnd else { throw fail("expected '}}', got \(describe(current.kind))") }
                advance()
                body.append(.output(e))
            case .blockBegin:
                let blockLoc = loc
                advance()
                guard case .name(let word) = current.kind else { throw fail("expected a statement name after '{%'") }
                if until.contains(word) { return (body, word) }
                if word.hasPrefix("end") || word == "else" || word == "elif" {
                    if until.isEmpty { throw fail("unexpected '\(word)' (no block is open)", blockLoc) }
                    throw fail("unexpected '\(word)'; expected one of \(until.sorted().map { "'\($0)'" }.joined(separator: ", "))")
                }
                body.append(try parseStatement(word))
            case .eof:
                if !until.isEmpty {
                    throw fail("unexpected end of template; expected one of \(until.sorted().map { "'\($0)'" }.joined(separator: ", "))")
                }
                return (body, nil)
            default:
                throw fail("unexpected \(describe(current.kind))")
            }
        }
    }

    private mutating func parseStatement(_ word: String) throws -> Node {
        try enter(); defer { nesting -= 1 }
        let l = loc
        switch word {
        case "if": return try parseIf()
        case "for": return try parseFor()
        case "set": return try parseSet()
        case "macro": return try parseMacro()
        case "filter":
            advance()
            let filters = try parseFilterChain(first: true)
            try expectBlockEnd()
            let (body, _) = try subparse(until: ["endfilter"])
            advance(); try expectBlockEnd()
            return .filterBlock(filters: filters, body: body)
        case "generation":
            advance(); try expectBlockEnd()
            let (body, _) = try subparse(until: ["endgeneration"])
            advance(); try expectBlockEnd()
            return .generation(body)
        case "break":
            advance(); try expectBlockEnd(); return .breakLoop(l)
        case "continue":
            advance(); try expectBlockEnd(); return .continueLoop(l)
        default:
            throw TemplateError.unsupported(construct: "the '{% \(word) %}' statement", line: l.line, column: l.column)
        }
    }

    private mutating func parseIf() throws -> Node {
        advance()  // if
        var branches: [(Expr, [Node])] = []
        var cond = try parseTuple(withCondExpr: false)
        try expectBlockEnd()
        while true {
            let (body, end) = try subparse(until: ["elif", "else", "endif"])
            branches.append((cond, body))
            advance()
            if end == "elif" {
                cond = try parseTuple(withCondExpr: false)
                try expectBlockEnd()
                continue
            }
            if end == "else" {
                try expectBlockEnd()
                let (other, _) = try subparse(until: ["endif"])
                advance(); try expectBlockEnd()
                return .ifBlock(branches, otherwise: other)
            }
            try expectBlockEnd()
            return .ifBlock(branches, otherwise: nil)
        }
    }

    private mutating func parseFor() throws -> Node {
        let l = loc
        advance()  // for
        let target = try parseAssignTarget(allowAttribute: false)
        guard isName("in") else { throw fail("expected 'in' in the for statement") }
        advance()
        let iter = try parseTuple(withCondExpr: false, extraEnd: ["recursive"])
        var filter: Expr? = nil
        if isName("if") { advance(); filter = try parseExpression() }
        if isName("recursive") {
            throw TemplateError.unsupported(construct: "recursive for loops", line: loc.line, column: loc.column)
        }
        try expectBlockEnd()
        let (body, end) = try subparse(until: ["endfor", "else"])
        advance()
        var other: [Node]? = nil
        if end == "else" {
            try expectBlockEnd()
            let (o, _) = try subparse(until: ["endfor"])
            other = o
            advance()
        }
        try expectBlockEnd()
        return .forLoop(target: target, iter: iter, filter: filter, body: body, otherwise: other, l)
    }

    private mutating func parseSet() throws -> Node {
        let l = loc
        advance()  // set
        let target = try parseAssignTarget(allowAttribute: true)
        if isOp("=") {
            advance()
            let e = try parseTuple()
            try expectBlockEnd()
            return .set(target, e, l)
        }
        var filters: [(String, [Expr], [(String, Expr)], SourceLocation)] = []
        if isOp("|") { filters = try parseFilterChain(first: false) }
        try expectBlockEnd()
        let (body, _) = try subparse(until: ["endset"])
        advance(); try expectBlockEnd()
        return .setBlock(target, body: body, filters: filters, l)
    }

    private mutating func parseMacro() throws -> Node {
        advance()  // macro
        let name = try expectName()
        try expectOp("(")
        var params: [(String, Expr?)] = []
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let p = try expectName()
            var def: Expr? = nil
            if isOp("=") { advance(); def = try parseExpression() }
            params.append((p, def))
        }
        advance()  // )
        try expectBlockEnd()
        let (body, _) = try subparse(until: ["endmacro"])
        advance()
        if case .name = current.kind { advance() }  // {% endmacro name %}
        try expectBlockEnd()
        return .macro(name: name, params: params, body: body)
    }

    private mutating func parseAssignTarget(allowAttribute: Bool) throws -> AssignTarget {
        var targets: [AssignTarget] = []
        var parenthesized = false
        if isOp("(") { parenthesized = true; advance() }
        repeat {
            if !targets.isEmpty { advance() }  // ,
            if parenthesized && isOp(")") { break }
            let n = try expectName()
            if allowAttribute && isOp(".") {
                advance()
                targets.append(.attribute(n, try expectName()))
            } else {
                targets.append(.name(n))
            }
        } while isOp(",")
        if parenthesized { try expectOp(")") }
        if targets.count == 1 && !parenthesized { return targets[0] }
        return .tuple(targets)
    }

    // MARK: - Expressions

    /// `a, b` makes a tuple; a single expression stays itself.
    mutating func parseTuple(withCondExpr: Bool = true, extraEnd: Set<String> = [], explicitParens: Bool = false) throws -> Expr {
        var items: [Expr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard isOp(",") else { break }
                advance()
                sawComma = true
            }
            if tupleEnds(extraEnd) { break }
            items.append(withCondExpr ? try parseExpression() : try parseOr())
            if !isOp(",") { break }
        }
        if !sawComma && items.count == 1 { return items[0] }
        if items.isEmpty && !explicitParens { throw fail("expected an expression, got \(describe(current.kind))") }
        return .tuple(items)
    }

    private func tupleEnds(_ extra: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(")"), .op("]"), .op("}"): return true
        case .name(let n): return extra.contains(n)
        default: return false
        }
    }

    mutating func parseExpression() throws -> Expr {
        try enter(); defer { nesting -= 1 }
        var e = try parseOr()
        while isName("if") {
            advance()
            let test = try parseOr()
            var other: Expr? = nil
            if isName("else") { advance(); other = try parseExpression() }
            e = .condExpr(test: test, then: e, otherwise: other)
        }
        return e
    }

    private mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while isName("or") { advance(); left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while isName("and") { advance(); left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> Expr {
        try enter(); defer { nesting -= 1 }
        if isName("not") { advance(); return .not(try parseNot()) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        let l = loc
        let first = try parseMath1()
        var ops: [(String, Expr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                advance(); ops.append((o, try parseMath1()))
            } else if isName("in") {
                advance(); ops.append(("in", try parseMath1()))
            } else if isName("not"), case .name("in") = peek().kind {
                advance(); advance(); ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? first : .compare(first, ops, l)
    }

    private mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            let l = loc
            advance()
            left = .binary(o, left, try parseConcat(), l)
        }
        return left
    }

    private mutating func parseConcat() throws -> Expr {
        let l = loc
        var args = [try parseMath2()]
        while isOp("~") { advance(); args.append(try parseMath2()) }
        return args.count == 1 ? args[0] : .concat(args, l)
    }

    private mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            let l = loc
            advance()
            left = .binary(o, left, try parsePow(), l)
        }
        return left
    }

    private mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        while isOp("**") {
            let l = loc
            advance()
            left = .binary("**", left, try parseUnary(), l)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        try enter(); defer { nesting -= 1 }
        let l = loc
        var node: Expr
        if isOp("-") {
            advance(); node = .neg(try parseUnary(withFilter: false), l)
        } else if isOp("+") {
            advance(); node = .pos(try parseUnary(withFilter: false), l)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node, start: l)
        if withFilter { node = try parseFilterExpr(node, start: l) }
        return node
    }

    private mutating func parsePrimary() throws -> Expr {
        let l = loc
        switch current.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, l)
            }
        case .string(var s):
            advance()
            while case .string(let more) = current.kind { s += more; advance() }
            return .literal(.string(s))
        case .integer(let v):
            advance(); return .literal(.int(v))
        case .float(let v):
            advance(); return .literal(.double(v))
        case .op("("):
            advance()
            let e = try parseTuple(explicitParens: true)
            try expectOp(")")
            return e
        case .op("["):
            advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            advance()
            return .list(items)
        case .op("{"):
            advance()
            var items: [(Expr, Expr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":")
                items.append((k, try parseExpression()))
            }
            advance()
            return .dict(items)
        default:
            throw fail("unexpected \(describe(current.kind))")
        }
    }

    private mutating func parsePostfix(_ node: Expr, start: SourceLocation) throws -> Expr {
        var node = node
        while true {
            if isOp(".") || isOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = try parseCall(node, start: start)
            } else {
                return node
            }
        }
    }

    private mutating func parseFilterExpr(_ node: Expr, start: SourceLocation) throws -> Expr {
        var node = node
        while true {
            if isOp("|") {
                for f in try parseFilterChain(first: false) {
                    node = .filter(node, name: f.0, args: f.1, kwargs: f.2, f.3)
                }
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                node = try parseCall(node, start: start)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ node: Expr) throws -> Expr {
        var l = loc
        if isOp(".") {
            advance()
            l = loc
            switch current.kind {
            case .name(let n): advance(); return .getAttr(node, n, l)
            case .integer(let v): advance(); return .getItem(node, .literal(.int(v)), l)
            default: throw fail("expected a name after '.'")
            }
        }
        try expectOp("[")
        var args: [Expr] = []
        while !isOp("]") {
            if !args.isEmpty { try expectOp(",") }
            args.append(try parseSubscribed())
        }
        advance()
        if args.count == 1 {
            if case let .slice(_, a, b, c, _) = args[0] { return .slice(node, start: a, stop: b, step: c, l) }
            return .getItem(node, args[0], l)
        }
        return .getItem(node, .tuple(args), l)
    }

    /// An index or a slice `a:b:c` (returned as `.slice` with a dummy base).
    private mutating func parseSubscribed() throws -> Expr {
        let l = loc
        var parts: [Expr?] = []
        if isOp(":") {
            parts.append(nil)
        } else {
            let e = try parseExpression()
            if !isOp(":") { return e }
            parts.append(e)
        }
        advance()  // :
        if isOp("]") || isOp(",") { parts.append(nil) }
        else if isOp(":") { parts.append(nil) }
        else { parts.append(try parseExpression()) }
        if isOp(":") {
            advance()
            if isOp("]") || isOp(",") { parts.append(nil) } else { parts.append(try parseExpression()) }
        } else {
            parts.append(nil)
        }
        return .slice(.literal(.none), start: parts[0], stop: parts[1], step: parts[2], l)
    }

    private mutating func parseCallArgs() throws -> ([Expr], [(String, Expr)]) {
        try expectOp("(")
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !isOp(")") {
            if !args.isEmpty || !kwargs.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            if isOp("*") || isOp("**") {
                throw TemplateError.unsupported(construct: "'*args' / '**kwargs' in a call", line: loc.line, column: loc.column)
            }
            if case .name(let n) = current.kind, case .op("=") = peek().kind {
                advance(); advance()
                kwargs.append((n, try parseExpression()))
            } else {
                if !kwargs.isEmpty { throw fail("positional argument after a keyword argument") }
                args.append(try parseExpression())
            }
        }
        advance()
        return (args, kwargs)
    }

    private mutating func parseCall(_ node: Expr, start: SourceLocation) throws -> Expr {
        let (args, kwargs) = try parseCallArgs()
        return .call(node, args: args, kwargs: kwargs, start)
    }

    /// `| name(args) | name2 ...`; with `first`, the first filter has no leading `|`.
    private mutating func parseFilterChain(first: Bool) throws -> [(String, [Expr], [(String, Expr)], SourceLocation)] {
        var result: [(String, [Expr], [(String, Expr)], SourceLocation)] = []
        var needPipe = !first
        while true {
            if needPipe {
                guard isOp("|") else { break }
                advance()
            }
            needPipe = true
            let l = loc
            var name = try expectName()
            while isOp("."), case .name(let more) = peek().kind { advance(); advance(); name += "." + more }
            var args: [Expr] = []
            var kwargs: [(String, Expr)] = []
            if isOp("(") { (args, kwargs) = try parseCallArgs() }
            result.append((name, args, kwargs, l))
        }
        return result
    }

    private mutating func parseTest(_ node: Expr) throws -> Expr {
        let l = loc
        advance()  // is
        var negated = false
        if isName("not") { advance(); negated = true }
        var name = try expectName()
        while isOp("."), case .name(let more) = peek().kind { advance(); advance(); name += "." + more }
        var args: [Expr] = []
        if isOp("(") {
            let (a, kw) = try parseCallArgs()
            if !kw.isEmpty { throw TemplateError.unsupported(construct: "keyword arguments to a test", line: l.line, column: l.column) }
            args = a
        } else {
            switch current.kind {
            case .name(let n) where !["else", "or", "and"].contains(n):
                if n == "is" { throw fail("you cannot chain multiple tests with 'is'") }
                let s = loc
                args = [try parsePostfix(try parsePrimary(), start: s)]
            case .string, .integer, .float, .op("("), .op("["), .op("{"):
                let s = loc
                args = [try parsePostfix(try parsePrimary(), start: s)]
            default:
                break
            }
        }
        return .test(node, name: name, args: args, negated: negated, l)
    }
}
