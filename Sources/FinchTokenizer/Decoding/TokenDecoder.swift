import Foundation

/// A decoder: turns the token strings of a sequence back into text (HF `tokenizers` decoders,
/// `decode_chain` semantics).
indirect enum TokenDecoder: Sendable {
    /// Maps byte-level characters back to bytes and decodes UTF-8 (invalid bytes become U+FFFD).
    case byteLevel
    /// Replaces `pattern` with `content` in every token.
    case replace(pattern: String, content: String)
    /// Turns runs of `<0xXX>` tokens into the text their bytes spell.
    case byteFallback
    /// Joins all tokens into one.
    case fuse
    /// Removes up to `start` leading and `stop` trailing `content` characters from each token.
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    /// SentencePiece spaces: `replacement` becomes a space (dropped in the first token unless
    /// `prependScheme` is "never").
    case metaspace(replacement: Unicode.Scalar, prependScheme: String)
    case sequence([TokenDecoder])

    /// The whole decoder applied to `tokens`, joined.
    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                if let b = ByteLevel.decode(t) { bytes.append(contentsOf: b) } else { bytes.append(contentsOf: t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .replace(pattern, content):
            guard !pattern.isEmpty else { return tokens }
            return tokens.map { $0.replacingAll(pattern, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = TokenDecoder.fallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                let chars = Array(token.unicodeScalars)
                var startCut = 0
                for (i, c) in chars.prefix(start).enumerated() {
                    if c == content { startCut = i + 1 } else { break }
                }
                var stopCut = chars.count
                for (i, c) in chars.reversed().prefix(stop).enumerated() {
                    if c == content { stopCut = chars.count - i - 1 } else { break }
                }
                guard stopCut > startCut else { return "" }
                var v = String.UnicodeScalarView()
                v.append(contentsOf: chars[startCut ..< stopCut])
                return String(v)
            }
        case let .metaspace(replacement, prependScheme):
            return tokens.enumerated().map { i, token in
                var s = String.UnicodeScalarView()
                for c in token.unicodeScalars {
                    if c == replacement {
                        if i == 0 && prependScheme != "never" { continue }
                        s.append(" ")
                    } else {
                        s.append(c)
                    }
                }
                return String(s)
            }
        case .sequence(let steps):
            return steps.reduce(tokens) { $1.decodeChain($0) }
        }
    }

    /// Whether this decoder is exactly the byte-level one (token bytes concatenate).
    var isPureByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let s): return s.count == 1 && s[0].isPureByteLevel
        default: return false
        }
    }

    /// The byte of a `<0xXX>` token.
    static func fallbackByte(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }
}

extension String {
    /// Replaces every occurrence of a non-empty literal `target`.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty, self.contains(target) else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}
