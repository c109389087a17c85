import Foundation

/// SentencePiece's compiled normalization rules (`precompiled_charsmap`, e.g. `nmt_nfkc` for T5),
/// as HF `tokenizers`' `Precompiled` normalizer applies them.
///
/// The blob is a little-endian u32 byte length of a darts-clone double array, the array (u32
/// units), then the replacement strings, each ended by a NUL. The array maps a UTF-8 key to the
/// offset of its replacement. `normalize` walks the text by extended grapheme clusters: a cluster
/// shorter than 6 bytes is looked up whole; otherwise, or when it has no entry, each of its
/// characters is. A lookup takes the shortest key that prefixes the chunk (darts-clone's common
/// prefix search, first result) and replaces the whole chunk with its string — tokenizers'
/// behaviour, kept as it is because the ids of every SentencePiece model converted by
/// transformers depend on it.
struct PrecompiledCharsmap: Sendable {
    /// The blob as stored (written back to tokenizer.json as base64).
    let blob: [UInt8]
    private let units: [UInt32]
    private let normalized: [UInt8]

    init(base64: String, source: String) throws {
        guard let data = Data(base64Encoded: base64) else {
            throw TokenizerError.invalidField(field: "normalizer.precompiled_charsmap", source: source, reason: "not base64")
        }
        try self.init(blob: [UInt8](data), source: source)
    }

    init(blob: [UInt8], source: String) throws {
        func bad(_ why: String) -> TokenizerError {
            .invalidField(field: "normalizer.precompiled_charsmap", source: source, reason: why)
        }
        self.blob = blob
        guard blob.count >= 4 else { throw bad("shorter than its 4-byte header") }
        let trieBytes = Int(UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        guard trieBytes % 4 == 0, trieBytes <= blob.count - 4, trieBytes > 0 else {
            throw bad("its header gives a double array of \(trieBytes) bytes in a blob of \(blob.count)")
        }
        var u = [UInt32](repeating: 0, count: trieBytes / 4)
        for i in u.indices {
            let o = 4 + 4 * i
            u[i] = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
        }
        units = u
        normalized = Array(blob[(4 + trieBytes)...])
    }

    // darts-clone unit fields.
    private static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    private static func value(_ u: UInt32) -> Int { Int(u & 0x7FFF_FFFF) }
    private static func label(_ u: UInt32) -> UInt32 { u & (0x8000_0000 | 0xFF) }
    private static func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }

    /// The value of the shortest key that prefixes `key` (nil when none does); a NUL byte ends the key.
    func firstPrefixValue<C: Collection>(_ key: C) -> Int? where C.Element == UInt8 {
        var pos = 0
        guard !units.isEmpty else { return nil }
        pos ^= Self.offset(units[0])
        for c in key {
            if c == 0 { break }
            pos ^= Int(c)
            guard pos < units.count else { return nil }
            let unit = units[pos]
            if Self.label(unit) != UInt32(c) { return nil }
            pos ^= Self.offset(unit)
            guard pos < units.count else { return nil }
            if Self.hasLeaf(unit) { return Self.value(units[pos]) }
        }
        return nil
    }

    /// The replacement of `chunk`, if the rules have one.
    func transform<C: Collection>(_ chunk: C) -> ArraySlice<UInt8>? where C.Element == UInt8 {
        guard let start = firstPrefixValue(chunk), start < normalized.count else { return nil }
        var end = start
        while end < normalized.count && normalized[end] != 0 { end += 1 }
        return normalized[start ..< end]
    }

    func normalize(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for grapheme in s {
            let bytes = Array(String(grapheme).utf8)
            if bytes.count < 6, let r = transform(bytes) {
                out.append(contentsOf: r)
                continue
            }
            for scalar in grapheme.unicodeScalars {
                let part = Array(String(scalar).utf8)
                if let r = transform(part) { out.append(contentsOf: r) } else { out.append(contentsOf: part) }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
