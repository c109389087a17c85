import Foundation

/// A normalizer: rewrites text before pre-tokenization (HF `tokenizers` normalizers).
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    /// Replaces every occurrence of a literal string or a regex with `content`.
    case replace(SplitPattern, content: String)
    case prepend(String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])
    /// SentencePiece's compiled rules (T5's `nmt_nfkc`).
    case precompiled(PrecompiledCharsmap)

    func normalize(_ s: String) -> String {
        switch self {
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case .lowercase: return s.lowercased()
        case let .replace(pattern, content):
            switch pattern {
            case .string(let needle):
                // By bytes (= by Unicode scalars), as tokenizers does: " " must match the space of
                // " \u{301}", which Swift's and Foundation's string search treat as one character.
                let n = Array(needle.utf8), bytes = Array(s.utf8)
                guard !n.isEmpty, bytes.count >= n.count else { return s }
                var out: [UInt8] = []
                out.reserveCapacity(bytes.count)
                var i = 0
                while i < bytes.count {
                    if bytes[i] == n[0], i + n.count <= bytes.count, bytes[i ..< i + n.count].elementsEqual(n) {
                        out.append(contentsOf: content.utf8)
                        i += n.count
                    } else {
                        out.append(bytes[i])
                        i += 1
                    }
                }
                return String(decoding: out, as: UTF8.self)
            case let .regex(_, _, matcher):
                guard let matcher else { return s }
                let bytes = Array(s.utf8)
                var out: [UInt8] = []
                var prev = 0
                for r in matcher.matches(in: bytes[...]) {
                    out.append(contentsOf: bytes[prev ..< r.lowerBound])
                    out.append(contentsOf: content.utf8)
                    prev = r.upperBound
                }
                out.append(contentsOf: bytes[prev...])
                return String(decoding: out, as: UTF8.self)
            }
        case .prepend(let p):
            return s.isEmpty ? s : p + s
        case let .strip(left, right):
            var scalars = Substring(s).unicodeScalars[...]
            if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
            if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
            return String(String.UnicodeScalarView(scalars))
        case .sequence(let steps):
            return steps.reduce(s) { $1.normalize($0) }
        case .precompiled(let map):
            return map.normalize(s)
        }
    }
}
