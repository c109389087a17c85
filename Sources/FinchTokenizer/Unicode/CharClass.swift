/// Character classes used by the pre-tokenizer scanners, matching the regex classes of
/// Oniguruma (which HF `tokenizers` uses): `\p{L}` = general category L*, `\p{N}` = N*,
/// `\s` = the White_Space property (U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4
    /// Neither letter, number nor whitespace: `[^\s\p{L}\p{N}]`.
    static let other: UInt8 = 0

    /// One byte of class bits per BMP scalar, built once.
    nonisolated(unsafe) static let bmpTable: UnsafeMutablePointer<UInt8> = {
        let t = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
        for v in 0..<0x10000 { t[v] = compute(UInt32(v)) }
        return t
    }()

    /// Characters first assigned in this Unicode version or later are treated as unassigned
    /// ("other"), because the Oniguruma inside HF `tokenizers` (0.23) knows Unicode 16.0 while
    /// Swift's tables are newer; this keeps every code point in the class HF puts it in.
    static let firstUnknownUnicodeMajor = 17

    static func compute(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return other }  // surrogates
        if let age = s.properties.age, age.major >= firstUnknownUnicodeMajor { return other }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return s.properties.isWhitespace ? space : other
        }
    }

    /// The class of scalar `v`; `table` is `bmpTable` (passed in to keep hot loops free of global accessors).
    @inline(__always)
    static func of(_ v: UInt32, _ table: UnsafeMutablePointer<UInt8>) -> UInt8 {
        v < 0x10000 ? table[Int(v)] : compute(v)
    }

    /// `char::is_alphanumeric` of Rust (Alphabetic or Numeric), used for `single_word` added tokens.
    static func isAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        if s.properties.isAlphabetic { return true }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
}

/// Decodes the scalar starting at `i` of valid UTF-8 `p[0..<n]`: (value, byte length).
@inline(__always)
func utf8Decode(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> (UInt32, Int) {
    let b0 = UInt32(p[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 {
        guard i + 1 < n else { return (0xFFFD, 1) }
        return (((b0 & 0x1F) << 6) | (UInt32(p[i + 1]) & 0x3F), 2)
    }
    if b0 < 0xF0 {
        guard i + 2 < n else { return (0xFFFD, n - i) }
        return (((b0 & 0x0F) << 12) | ((UInt32(p[i + 1]) & 0x3F) << 6) | (UInt32(p[i + 2]) & 0x3F), 3)
    }
    guard i + 3 < n else { return (0xFFFD, n - i) }
    return (((b0 & 0x07) << 18) | ((UInt32(p[i + 1]) & 0x3F) << 12) | ((UInt32(p[i + 2]) & 0x3F) << 6)
            | (UInt32(p[i + 3]) & 0x3F), 4)
}

/// Byte length of the UTF-8 sequence that starts with `b0`.
@inline(__always)
func utf8Length(_ b0: UInt8) -> Int {
    b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
}
