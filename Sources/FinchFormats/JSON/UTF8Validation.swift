/// Strict UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
///
/// Used instead of `String(validating:as:)`, which needs macOS 15 while the package supports macOS 14.
func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 { i += 1; continue }
        let len: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xbf  // allowed range of the second byte
        switch b0 {
        case 0xc2...0xdf: len = 2
        case 0xe0: len = 3; lo = 0xa0
        case 0xe1...0xec, 0xee...0xef: len = 3
        case 0xed: len = 3; hi = 0x9f
        case 0xf0: len = 4; lo = 0x90
        case 0xf1...0xf3: len = 4
        case 0xf4: len = 4; hi = 0x8f
        default: return false
        }
        guard n - i >= len else { return false }
        let b1 = bytes[i + 1]
        guard b1 >= lo && b1 <= hi else { return false }
        for k in 2..<len where bytes[i + k] & 0xc0 != 0x80 { return false }
        i += len
    }
    return true
}

/// `bytes` as a String if they are valid UTF-8, else nil.
func validatedUTF8String(_ bytes: UnsafeRawBufferPointer) -> String? {
    isValidUTF8(bytes) ? String(decoding: bytes, as: UTF8.self) : nil
}
