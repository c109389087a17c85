/// Turns generated ids into text one id at a time.
///
/// `append(_:)` returns only complete text: a multi-byte UTF-8 character split across tokens
/// (common for emoji and CJK in byte-level vocabularies) is held back until its last byte arrives.
/// `flush()` returns whatever is left (an incomplete character becomes U+FFFD, as in `decode`).
/// The concatenation of everything returned equals `tokenizer.decode(allIds)`.
public final class TokenStreamDecoder {
    /// The tokenizer whose ids are decoded.
    public let tokenizer: Tokenizer
    /// Whether special added tokens are left out of the text.
    public let skipSpecialTokens: Bool
    // Byte-level path.
    private var pending: [UInt8] = []
    // Generic path (HF `DecodeStream`): ids since the last emitted prefix.
    private var ids: [Int] = []
    private var prefix = ""
    private var prefixIndex = 0

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that is now complete (possibly empty).
    public func append(_ id: Int) -> String {
        if tokenizer.decodesBytewise {
            tokenizer.appendBytes(of: id, skipSpecialTokens: skipSpecialTokens, to: &pending)
            let cut = Self.completePrefixLength(pending)
            guard cut > 0 else { return "" }
            let text = String(decoding: pending[..<cut], as: UTF8.self)
            pending.removeFirst(cut)
            return text
        }
        ids.append(id)
        let string = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        guard string.utf8.count > prefix.utf8.count, !string.hasSuffix("\u{FFFD}"), string.hasPrefix(prefix) else {
            return ""
        }
        let newText = String(string.utf8.dropFirst(prefix.utf8.count))!
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        prefixIndex = newPrefixIndex
        return newText
    }

    /// Ends the stream: returns the text still held back.
    public func flush() -> String {
        if tokenizer.decodesBytewise {
            defer { pending.removeAll() }
            return String(decoding: pending, as: UTF8.self)
        }
        let string = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        defer { ids.removeAll(); prefix = ""; prefixIndex = 0 }
        guard string.utf8.count > prefix.utf8.count, string.hasPrefix(prefix) else { return "" }
        return String(string.utf8.dropFirst(prefix.utf8.count))!
    }

    /// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence that more
    /// bytes could still complete. Cutting there decodes exactly as decoding everything at once.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Find the start of the last sequence (at most 3 bytes back).
        var k = n - 1
        var back = 0
        while k >= 0 && back < 3 && (bytes[k] & 0xC0) == 0x80 { k -= 1; back += 1 }
        guard k >= 0 else { return n }
        let lead = bytes[k]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return n  // ASCII, stray continuation bytes or invalid leads: nothing to wait for
        }
        let have = n - k
        if have >= need { return n }
        // The bytes present must be a valid beginning of that sequence.
        if have >= 2 {
            let b1 = bytes[k + 1]
            let ok: Bool
            switch lead {
            case 0xE0: ok = (0xA0...0xBF).contains(b1)
            case 0xED: ok = (0x80...0x9F).contains(b1)
            case 0xF0: ok = (0x90...0xBF).contains(b1)
            case 0xF4: ok = (0x80...0x8F).contains(b1)
            default: ok = (0x80...0xBF).contains(b1)
            }
            if !ok { return n }
        }
        return k
    }
}
