/// GPT-2's reversible map between bytes and printable characters (`bytes_to_unicode`):
/// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100... in order.
/// Byte-level vocabularies spell every token in this alphabet (a space is `Ġ`, a newline `Ċ`).
enum ByteLevel {
    /// `byteToScalar[b]` is the character that spells byte `b`.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var printable = Set<Int>()
        for b in 0x21...0x7E { printable.insert(b) }
        for b in 0xA1...0xAC { printable.insert(b) }
        for b in 0xAE...0xFF { printable.insert(b) }
        var n = 0
        for b in 0..<256 {
            if printable.contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(UInt32(256 + n))!
                n += 1
            }
        }
        return table
    }()

    /// The inverse map: scalar value → byte.
    static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    /// `bytes` spelled in the byte-level alphabet.
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The bytes a byte-level token spells, or nil if it has a character outside the alphabet.
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// Whether every character of `token` is in the byte-level alphabet.
    static func isSpelled(_ token: String) -> Bool {
        token.unicodeScalars.allSatisfy { scalarToByte[$0.value] != nil }
    }
}
