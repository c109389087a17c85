/// Tokens of a Jinja template.
enum TokenKind: Equatable {
    case data(String)
    case variableBegin, variableEnd
    case blockBegin, blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
    case eof
}

struct LexToken {
    var kind: TokenKind
    var loc: SourceLocation
}

/// Jinja's lexer with the settings transformers uses for chat templates: `trim_blocks=True`,
/// `lstrip_blocks=True`, `keep_trailing_newline=False`, default delimiters, whitespace control
/// with `-` and `+`, comments and `{% raw %}`.
struct TemplateLexer {
    private let src: [Unicode.Scalar]
    private var pos = 0
    private var tokens: [LexToken] = []
    /// Line start offsets, for locations.
    private var lineStarts: [Int] = [0]

    init(_ source: String) {
        // Normalize newlines (\r\n and \r become \n) and drop one trailing newline.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pendingCR = false
        while let c = it.next() {
            if pendingCR {
                pendingCR = false
                scalars.append("\n")
                if c == "\n" { continue }
            }
            if c == "\r" { pendingCR = true; continue }
            scalars.append(c)
        }
        if pendingCR { scalars.append("\n") }
        if scalars.last == "\n" { scalars.removeLast() }
        src = scalars
        for (i, c) in src.enumerated() where c == "\n" { lineStarts.append(i + 1) }
    }

    func location(_ offset: Int) -> SourceLocation {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return SourceLocation(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    private func fail(_ msg: String, at offset: Int) -> TemplateError {
        let l = location(offset)
        return .syntax(message: msg, line: l.line, column: l.column)
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    private func matches(_ s: String, at i: Int) -> Bool {
        var k = i
        for c in s.unicodeScalars {
            guard k < src.count, src[k] == c else { return false }
            k += 1
        }
        return true
    }

    mutating func tokenize() throws -> [LexToken] {
        var lineStarting = true
        while pos < src.count {
            // Find the next tag opener.
            var k = pos
            var found: (offset: Int, kind: Character)? = nil
            while k + 1 < src.count {
                if src[k] == "{" {
                    let n = src[k + 1]
                    if n == "{" || n == "%" || n == "#" { found = (k, Character(n)); break }
                }
                k += 1
            }
            guard let (open, kind) = found else {
                emitData(String(String.UnicodeScalarView(src[pos...])), at: pos)
                pos = src.count
                break
            }
            var text = Array(src[pos..<open])
            let signPos = open + 2
            let sign: Unicode.Scalar? = signPos < src.count && (src[signPos] == "-" || src[signPos] == "+") ? src[signPos] : nil
            if sign == "-" {
                while let l = text.last, Self.isSpace(l) { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: drop spaces between the start of the line and a block or comment tag.
                let lPos = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                if lPos > 0 || lineStarting {
                    let tail = text[lPos...]
                    if !tail.isEmpty && tail.allSatisfy(Self.isSpace) { text.removeSubrange(lPos...) }
                }
            }
            if !text.isEmpty { emitData(String(String.UnicodeScalarView(text)), at: pos) }
            let afterOpen = open + 2 + (sign == nil ? 0 : 1)

            switch kind {
            case "#":
                pos = try skipComment(from: afterOpen, openAt: open)
                lineStarting = pos > 0 && src[pos - 1] == "\n"
            case "%":
                if let end = rawBlock(at: open) {
                    pos = end
                    lineStarting = pos > 0 && src[pos - 1] == "\n"
                    continue
                }
                tokens.append(LexToken(kind: .blockBegin, loc: location(open)))
                pos = afterOpen
                try lexTag(block: true)
                lineStarting = pos > 0 && src[pos - 1] == "\n"
            default:
                tokens.append(LexToken(kind: .variableBegin, loc: location(open)))
                pos = afterOpen
                try lexTag(block: false)
                lineStarting = pos > 0 && src[pos - 1] == "\n"
            }
        }
        tokens.append(LexToken(kind: .eof, loc: location(src.count)))
        return tokens
    }

    private mutating func emitData(_ s: String, at offset: Int) {
        tokens.append(LexToken(kind: .data(s), loc: location(offset)))
    }

    /// Skips a comment body; returns the position after its end (with trim/strip applied).
    private func skipComment(from start: Int, openAt: Int) throws -> Int {
        var k = start
        while k + 1 < src.count {
            if src[k] == "#" && src[k + 1] == "}" {
                var end = k + 2
                let prevSign: Unicode.Scalar? = k > start && (src[k - 1] == "-" || src[k - 1] == "+") ? src[k - 1] : nil
                if prevSign == "-" {
                    while end < src.count && Self.isSpace(src[end]) { end += 1 }
                } else if prevSign != "+" {
                    if end < src.count && src[end] == "\n" { end += 1 }  // trim_blocks
                }
                return end
            }
            k += 1
        }
        throw fail("missing end of comment tag", at: openAt)
    }

    /// `{% raw %}...{% endraw %}`: returns the position after it, having emitted the raw text.
    private mutating func rawBlock(at open: Int) -> Int? {
        var k = open + 2
        var openSign: Unicode.Scalar? = nil
        if k < src.count && (src[k] == "-" || src[k] == "+") { openSign = src[k]; k += 1 }
        _ = openSign
        while k < src.count && Self.isSpace(src[k]) { k += 1 }
        guard matches("raw", at: k) else { return nil }
        k += 3
        while k < src.count && Self.isSpace(src[k]) { k += 1 }
        var bodyStart: Int
        if matches("-%}", at: k) {
            bodyStart = k + 3
            while bodyStart < src.count && Self.isSpace(src[bodyStart]) { bodyStart += 1 }
        } else if matches("%}", at: k) {
            bodyStart = k + 2
        } else {
            return nil
        }
        // Find {% endraw %}.
        var j = bodyStart
        while j + 1 < src.count {
            if src[j] == "{" && src[j + 1] == "%" {
                var m = j + 2
                var sign: Unicode.Scalar? = nil
                if m < src.count && (src[m] == "-" || src[m] == "+") { sign = src[m]; m += 1 }
                while m < src.count && Self.isSpace(src[m]) { m += 1 }
                if matches("endraw", at: m) {
                    m += 6
                    while m < src.count && Self.isSpace(src[m]) { m += 1 }
                    var end: Int
                    if matches("-%}", at: m) {
                        end = m + 3
                        while end < src.count && Self.isSpace(src[end]) { end += 1 }
                    } else if matches("+%}", at: m) {
                        end = m + 3
                    } else if matches("%}", at: m) {
                        end = m + 2
                        if end < src.count && src[end] == "\n" { end += 1 }
                    } else {
                        j += 1; continue
                    }
                    var body = Array(src[bodyStart..<j])
                    if sign == "-" { while let l = body.last, Self.isSpace(l) { body.removeLast() } }
                    if !body.isEmpty { emitData(String(String.UnicodeScalarView(body)), at: bodyStart) }
                    return end
                }
            }
            j += 1
        }
        return nil
    }

    /// Lexes the inside of `{% %}` or `{{ }}` up to and including the end delimiter.
    private mutating func lexTag(block: Bool) throws {
        var depth: [Unicode.Scalar] = []
        let start = pos
        while true {
            guard pos < src.count else {
                throw fail(block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'",
                           at: start)
            }
            if depth.isEmpty {
                if block {
                    if matches("+%}", at: pos) {
                        tokens.append(LexToken(kind: .blockEnd, loc: location(pos))); pos += 3; return
                    }
                    if matches("-%}", at: pos) {
                        tokens.append(LexToken(kind: .blockEnd, loc: location(pos))); pos += 3
                        while pos < src.count && Self.isSpace(src[pos]) { pos += 1 }
                        return
                    }
                    if matches("%}", at: pos) {
                        tokens.append(LexToken(kind: .blockEnd, loc: location(pos))); pos += 2
                        if pos < src.count && src[pos] == "\n" { pos += 1 }  // trim_blocks
                        return
                    }
                } else {
                    if matches("-}}", at: pos) {
                        tokens.append(LexToken(kind: .variableEnd, loc: location(pos))); pos += 3
                        while pos < src.count && Self.isSpace(src[pos]) { pos += 1 }
                        return
                    }
                    if matches("}}", at: pos) {
                        tokens.append(LexToken(kind: .variableEnd, loc: location(pos))); pos += 2
                        return
                    }
                }
            }
            let c = src[pos]
            if Self.isSpace(c) { pos += 1; continue }
            let loc = location(pos)
            if c == "'" || c == "\"" {
                tokens.append(LexToken(kind: .string(try lexString()), loc: loc))
                continue
            }
            if c.properties.numericType == .decimal && c.isASCII {
                tokens.append(LexToken(kind: lexNumber(), loc: loc))
                continue
            }
            if c == "_" || c.properties.isXIDStart {
                var k = pos + 1
                while k < src.count && (src[k] == "_" || src[k].properties.isXIDContinue) { k += 1 }
                tokens.append(LexToken(kind: .name(String(String.UnicodeScalarView(src[pos..<k]))), loc: loc))
                pos = k
                continue
            }
            // Operators, longest first.
            let two = ["//", "**", "==", "!=", ">=", "<="]
            if let op = two.first(where: { matches($0, at: pos) }) {
                tokens.append(LexToken(kind: .op(op), loc: loc)); pos += 2; continue
            }
            let singles: Set<Unicode.Scalar> = ["+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<",
                                                "=", ".", ":", "|", ",", ";"]
            guard singles.contains(c) else { throw fail("unexpected character '\(c)'", at: pos) }
            switch c {
            case "(": depth.append(")")
            case "[": depth.append("]")
            case "{": depth.append("}")
            case ")", "]", "}":
                guard let expected = depth.popLast() else { throw fail("unexpected '\(c)'", at: pos) }
                if expected != c { throw fail("unexpected '\(c)', expected '\(expected)'", at: pos) }
            default: break
            }
            tokens.append(LexToken(kind: .op(String(c)), loc: loc))
            pos += 1
        }
    }

    private mutating func lexNumber() -> TokenKind {
        let start = pos
        func digits() { while pos < src.count && (src[pos].isASCII && src[pos].properties.numericType == .decimal || src[pos] == "_") { pos += 1 } }
        digits()
        var isFloat = false
        if pos + 1 < src.count && src[pos] == "." && src[pos + 1].isASCII && src[pos + 1].properties.numericType == .decimal {
            isFloat = true
            pos += 1
            digits()
        }
        if pos < src.count && (src[pos] == "e" || src[pos] == "E") {
            var k = pos + 1
            if k < src.count && (src[k] == "+" || src[k] == "-") { k += 1 }
            if k < src.count && src[k].isASCII && src[k].properties.numericType == .decimal {
                isFloat = true
                pos = k
                digits()
            }
        }
        let text = String(String.UnicodeScalarView(src[start..<pos])).replacingAll("_", with: "")
        if isFloat { return .float(Double(text) ?? 0) }
        if let i = Int(text) { return .integer(i) }
        return .float(Double(text) ?? 0)
    }

    /// A quoted string with Python `unicode-escape` decoding of backslash escapes.
    private mutating func lexString() throws -> String {
        let quote = src[pos]
        let start = pos
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < src.count {
            let c = src[pos]
            if c == quote { pos += 1; return String(out) }
            if c == "\\" && pos + 1 < src.count {
                let e = src[pos + 1]
                pos += 2
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "v": out.append("\u{0B}")
                case "\n": break
                case "x", "u", "U":
                    let n = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard pos + n <= src.count, let v = UInt32(String(String.UnicodeScalarView(src[pos..<pos + n])), radix: 16),
                          let s = Unicode.Scalar(v) else {
                        throw fail("invalid \\\(e) escape in a string", at: pos - 2)
                    }
                    out.append(s)
                    pos += n
                case "0"..."7":
                    var v = e.value - 48
                    var k = 0
                    while k < 2 && pos < src.count && ("0"..."7").contains(src[pos]) {
                        v = v * 8 + src[pos].value - 48; pos += 1; k += 1
                    }
                    out.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                default:
                    out.append("\\"); out.append(e)
                }
                continue
            }
            out.append(c)
            pos += 1
        }
        throw fail("unterminated string", at: start)
    }
}
