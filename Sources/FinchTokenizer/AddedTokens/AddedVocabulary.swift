/// Finds added tokens in text with leftmost-longest matching (like the Aho-Corasick automaton
/// of HF `AddedVocabulary`), honouring `lstrip`, `rstrip` and `single_word`.
struct AddedTokenMatcher: Sendable {
    /// Byte trie: node → (byte → child). Node 0 is the root.
    private var children: [[UInt8: Int32]] = [[:]]
    /// Index into `tokens` of the token ending at each node, or -1.
    private var terminal: [Int32] = [-1]
    private var firstByte = [Bool](repeating: false, count: 256)
    let tokens: [AddedToken]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        for (k, t) in tokens.enumerated() {
            let bytes = Array(t.content.utf8)
            guard let f = bytes.first else { continue }
            firstByte[Int(f)] = true
            var node = 0
            for b in bytes {
                if let c = children[node][b] {
                    node = Int(c)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][b] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] < 0 { terminal[node] = Int32(k) }
        }
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// A piece of the input: either plain text (`token == nil`) or an added token.
    struct Split {
        var range: Range<Int>
        var token: AddedToken?
    }

    /// Splits `text[range]` (UTF-8) into plain pieces and added-token matches (HF `find_matches`).
    func split(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [Split] {
        if tokens.isEmpty || range.isEmpty { return [Split(range: range, token: nil)] }
        var result: [Split] = []
        var startOffset = range.lowerBound
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            guard firstByte[Int(text[i])] else { i += 1; continue }
            // Longest match starting at i.
            var node = 0, j = i, best = -1, bestEnd = i
            while j < end, let c = children[node][text[j]] {
                node = Int(c)
                j += 1
                if terminal[node] >= 0 { best = Int(terminal[node]); bestEnd = j }
            }
            guard best >= 0 else { i += 1; continue }
            let token = tokens[best]
            var start = i
            var stop = bestEnd
            i = bestEnd  // the automaton resumes after the match whether or not it is kept
            if token.singleWord {
                let startSpace = start == range.lowerBound || !Self.endsWithWord(text, range.lowerBound, start)
                let stopSpace = stop == end || !Self.startsWithWord(text, stop, end)
                if !(startSpace && stopSpace) { continue }
            }
            if token.lstrip {
                start = max(Self.whitespaceStart(text, range.lowerBound, start), startOffset)
            }
            if token.rstrip {
                stop = Self.whitespaceEnd(text, stop, end)
            }
            if startOffset < start { result.append(Split(range: startOffset ..< start, token: nil)) }
            result.append(Split(range: start ..< stop, token: token))
            startOffset = stop
        }
        if startOffset < end { result.append(Split(range: startOffset ..< end, token: nil)) }
        return result
    }

    private static func scalarBefore(_ t: UnsafeBufferPointer<UInt8>, _ lo: Int, _ pos: Int) -> (Unicode.Scalar, Int)? {
        guard pos > lo else { return nil }
        var k = pos - 1
        while k > lo && (t[k] & 0xC0) == 0x80 { k -= 1 }
        let (v, _) = utf8Decode(t.baseAddress!, k, pos)
        return (Unicode.Scalar(v) ?? "\u{FFFD}", k)
    }

    private static func endsWithWord(_ t: UnsafeBufferPointer<UInt8>, _ lo: Int, _ pos: Int) -> Bool {
        guard let (s, _) = scalarBefore(t, lo, pos) else { return false }
        return CharClass.isAlphanumeric(s)
    }

    private static func startsWithWord(_ t: UnsafeBufferPointer<UInt8>, _ pos: Int, _ hi: Int) -> Bool {
        guard pos < hi else { return false }
        let (v, _) = utf8Decode(t.baseAddress!, pos, hi)
        return CharClass.isAlphanumeric(Unicode.Scalar(v) ?? "\u{FFFD}")
    }

    /// Start of the whitespace run that ends at `pos`.
    private static func whitespaceStart(_ t: UnsafeBufferPointer<UInt8>, _ lo: Int, _ pos: Int) -> Int {
        var p = pos
        while let (s, k) = scalarBefore(t, lo, p), s.properties.isWhitespace { p = k }
        return p
    }

    /// End of the whitespace run that starts at `pos`.
    private static func whitespaceEnd(_ t: UnsafeBufferPointer<UInt8>, _ pos: Int, _ hi: Int) -> Int {
        var p = pos
        while p < hi {
            let (v, l) = utf8Decode(t.baseAddress!, p, hi)
            guard let s = Unicode.Scalar(v), s.properties.isWhitespace else { break }
            p += l
        }
        return p
    }
}
