/// How a `Split` pre-tokenizer treats the matched delimiters (HF `SplitDelimiterBehavior`).
public enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// The pattern of a `Split` pre-tokenizer: a literal string or a regex (run by a hand-written
/// scanner when it is one of the well-known byte-level patterns, else by `NSRegularExpression`).
enum SplitPattern: Sendable {
    case string(String)
    case regex(String, scanner: SplitScanners.Kind?, matcher: RegexMatcher?)

    static func regex(_ pattern: String) throws -> SplitPattern {
        if let k = SplitScanners.kind(forPattern: pattern) { return .regex(pattern, scanner: k, matcher: nil) }
        return .regex(pattern, scanner: nil, matcher: try RegexMatcher(pattern: pattern))
    }
}

/// A pre-tokenizer: splits text (after normalization) into the words BPE runs on.
/// Mirrors the HF `tokenizers` components of the same names.
indirect enum PreTokenizer: Sendable {
    /// Byte-level: optionally prepend a space, optionally split with GPT-2's regex; the byte to
    /// printable-character mapping itself is applied by the model (`BPEModel.byteLevel`).
    case byteLevel(addPrefixSpace: Bool, trimOffsets: Bool, useRegex: Bool)
    case split(SplitPattern, behavior: SplitBehavior, invert: Bool)
    /// Splits digits from the rest: each digit alone, or runs of digits.
    case digits(individualDigits: Bool)
    /// SentencePiece style: spaces become `replacement`, which is prepended per `prependScheme`
    /// ("always", "first", "never"); with `split`, words start at each `replacement`.
    case metaspace(replacement: String, prependScheme: String, split: Bool)
    /// Splits on whitespace, dropping it.
    case whitespaceSplit
    case sequence([PreTokenizer])

    /// Whether the byte-level alphabet is in use (a `ByteLevel` step is present).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let s): return s.contains { $0.isByteLevel }
        default: return false
        }
    }

    /// Splits one segment of text into words. `isFirstSegment` is true for the segment at the
    /// start of the input (used by Metaspace's "first" scheme).
    func preTokenize(_ segment: ArraySlice<UInt8>, isFirstSegment: Bool, into out: inout [ArraySlice<UInt8>]) {
        switch self {
        case .sequence(let steps):
            var current: [ArraySlice<UInt8>] = [segment]
            var next: [ArraySlice<UInt8>] = []
            for step in steps {
                next.removeAll(keepingCapacity: true)
                for (k, piece) in current.enumerated() {
                    step.preTokenize(piece, isFirstSegment: isFirstSegment && k == 0, into: &next)
                }
                swap(&current, &next)
            }
            out.append(contentsOf: current)
        default:
            apply(segment, isFirstSegment: isFirstSegment, into: &out)
        }
    }

    private func apply(_ piece: ArraySlice<UInt8>, isFirstSegment: Bool, into out: inout [ArraySlice<UInt8>]) {
        switch self {
        case let .byteLevel(addPrefixSpace, _, useRegex):
            var piece = piece
            if addPrefixSpace && piece.first != 0x20 {
                piece = ArraySlice([0x20] + piece)
            }
            guard useRegex else {
                if !piece.isEmpty { out.append(piece) }
                return
            }
            Self.scan(.gpt2, piece, into: &out)

        case let .split(pattern, behavior, invert):
            if case let .regex(_, scanner?, _) = pattern, behavior == .isolated, !invert {
                Self.scan(scanner, piece, into: &out)
                return
            }
            let matches = Self.findMatches(pattern, piece)
            Self.splitWith(matches: matches, piece: piece, behavior: behavior, invert: invert, into: &out)

        case let .digits(individual):
            let base = piece.startIndex
            var matches: [Range<Int>] = []
            piece.withUnsafeBufferPointer { buf in
                guard let p = buf.baseAddress else { return }
                let n = buf.count
                let t = CharClass.bmpTable
                var i = 0
                var runStart = -1
                while i < n {
                    let (c, l) = utf8Decode(p, i, n)
                    if CharClass.of(c, t) == CharClass.number {
                        if individual { matches.append(base + i ..< base + i + l) }
                        else if runStart < 0 { runStart = i }
                    } else if runStart >= 0 {
                        matches.append(base + runStart ..< base + i); runStart = -1
                    }
                    i += l
                }
                if runStart >= 0 { matches.append(base + runStart ..< base + n) }
            }
            Self.splitWith(matches: matches, piece: piece, behavior: .isolated, invert: false, into: &out)

        case let .metaspace(replacement, prependScheme, split):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(piece.count + 3)
            let rep = Array(replacement.utf8)
            for b in piece {
                if b == 0x20 { bytes.append(contentsOf: rep) } else { bytes.append(b) }
            }
            let prepend = prependScheme == "always" || (prependScheme == "first" && isFirstSegment)
            if prepend && !bytes.starts(with: rep) { bytes.insert(contentsOf: rep, at: 0) }
            let whole = ArraySlice(bytes)
            if !split {
                if !whole.isEmpty { out.append(whole) }
                return
            }
            let matches = Self.findMatches(.string(replacement), whole)
            Self.splitWith(matches: matches, piece: whole, behavior: .mergedWithNext, invert: false, into: &out)

        case .whitespaceSplit:
            let base = piece.startIndex
            piece.withUnsafeBufferPointer { buf in
                guard let p = buf.baseAddress else { return }
                let n = buf.count
                let t = CharClass.bmpTable
                var i = 0, start = -1
                while i < n {
                    let (c, l) = utf8Decode(p, i, n)
                    if CharClass.of(c, t) == CharClass.space {
                        if start >= 0 { out.append(piece[base + start ..< base + i]); start = -1 }
                    } else if start < 0 { start = i }
                    i += l
                }
                if start >= 0 { out.append(piece[base + start ..< base + n]) }
            }

        case .sequence:
            preTokenize(piece, isFirstSegment: isFirstSegment, into: &out)
        }
    }

    private static func scan(_ kind: SplitScanners.Kind, _ piece: ArraySlice<UInt8>, into out: inout [ArraySlice<UInt8>]) {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(piece.count / 3 + 1)
        piece.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            SplitScanners.split(kind, p, buf.count, base: piece.startIndex, into: &ranges)
        }
        for r in ranges { out.append(piece[r]) }
    }

    /// Matches of `pattern` in `piece`, as absolute indices of `piece`.
    private static func findMatches(_ pattern: SplitPattern, _ piece: ArraySlice<UInt8>) -> [Range<Int>] {
        let base = piece.startIndex
        switch pattern {
        case .string(let s):
            let needle = Array(s.utf8)
            guard !needle.isEmpty, piece.count >= needle.count else { return [] }
            var result: [Range<Int>] = []
            var i = piece.startIndex
            let last = piece.endIndex - needle.count
            while i <= last {
                if piece[i] == needle[0] && piece[i ..< i + needle.count].elementsEqual(needle) {
                    result.append(i ..< i + needle.count)
                    i += needle.count
                } else {
                    i += 1
                }
            }
            return result
        case let .regex(_, scanner, matcher):
            if let matcher {
                return matcher.matches(in: piece).map { base + $0.lowerBound ..< base + $0.upperBound }
            }
            var ranges: [Range<Int>] = []
            if let scanner {
                piece.withUnsafeBufferPointer { buf in
                    guard let p = buf.baseAddress else { return }
                    SplitScanners.split(scanner, p, buf.count, base: base, into: &ranges)
                }
            }
            return ranges
        }
    }

    /// HF's `NormalizedString::split`: turns matches into pieces according to `behavior`.
    private static func splitWith(matches: [Range<Int>], piece: ArraySlice<UInt8>, behavior: SplitBehavior,
                                  invert: Bool, into out: inout [ArraySlice<UInt8>]) {
        // (range, isMatch) covering the whole piece.
        var parts: [(Range<Int>, Bool)] = []
        var prev = piece.startIndex
        for m in matches {
            if prev != m.lowerBound { parts.append((prev ..< m.lowerBound, false)) }
            parts.append((m, true))
            prev = m.upperBound
        }
        if prev != piece.endIndex { parts.append((prev ..< piece.endIndex, false)) }
        if invert { parts = parts.map { ($0.0, !$0.1) } }

        var result: [(Range<Int>, Bool)] = []
        switch behavior {
        case .isolated:
            result = parts.map { ($0.0, false) }
        case .removed:
            result = parts
        case .contiguous:
            var previousMatch = false
            for (r, isMatch) in parts {
                if isMatch == previousMatch, let last = result.last {
                    result[result.count - 1] = (last.0.lowerBound ..< r.upperBound, false)
                } else {
                    result.append((r, false))
                }
                previousMatch = isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for (r, isMatch) in parts {
                if isMatch && !previousMatch, let last = result.last {
                    result[result.count - 1] = (last.0.lowerBound ..< r.upperBound, false)
                } else {
                    result.append((r, false))
                }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for (r, isMatch) in parts.reversed() {
                if isMatch && !previousMatch, let last = result.last {
                    result[result.count - 1] = (r.lowerBound ..< last.0.upperBound, false)
                } else {
                    result.append((r, false))
                }
                previousMatch = isMatch
            }
            result.reverse()
        }
        for (r, removed) in result where !removed && !r.isEmpty {
            out.append(piece[r])
        }
    }
}
