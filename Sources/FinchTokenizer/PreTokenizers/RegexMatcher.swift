import Foundation

/// An arbitrary split regex from a tokenizer.json, run with Foundation's `NSRegularExpression` (ICU).
///
/// The pattern is written for Oniguruma; the one difference that matters for tokenizer patterns is
/// `\s`, which ICU defines as `[\t\n\f\r\p{Z}]` (without U+000B and U+0085), so `\s` / `\S` are
/// rewritten to the White_Space set Oniguruma uses.
final class RegexMatcher: @unchecked Sendable {
    let pattern: String
    private let regex: NSRegularExpression

    init(pattern: String) throws {
        self.pattern = pattern
        do {
            regex = try NSRegularExpression(pattern: RegexMatcher.translate(pattern), options: [])
        } catch {
            throw TokenizerError.invalidRegex(pattern: pattern, reason: "\(error)")
        }
    }

    /// Rewrites Oniguruma-only spellings for ICU.
    static func translate(_ p: String) -> String {
        var out = ""
        var inClass = 0
        var it = Array(p.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "\\", let e = it.popFirst() {
                switch e {
                case "s": out += inClass > 0 ? "\\s\\x{0B}\\x{85}" : "[\\s\\x{0B}\\x{85}]"
                case "S": out += inClass > 0 ? "\\S" : "[^\\s\\x{0B}\\x{85}]"
                default: out.unicodeScalars.append(c); out.unicodeScalars.append(e)
                }
                continue
            }
            if c == "[" { inClass += 1 } else if c == "]" && inClass > 0 { inClass -= 1 }
            out.unicodeScalars.append(c)
        }
        return out
    }

    /// Byte ranges (UTF-8 offsets into `bytes`) of the non-overlapping matches, left to right.
    func matches(in bytes: ArraySlice<UInt8>) -> [Range<Int>] {
        let s = String(decoding: bytes, as: UTF8.self)
        // UTF-16 offset -> UTF-8 offset, computed per scalar (String.Index conversions would round
        // to grapheme boundaries, e.g. inside "\r\n" or before a combining mark).
        var map: [Int] = []
        map.reserveCapacity(bytes.count + 1)
        var u8 = 0
        for scalar in s.unicodeScalars {
            map.append(u8)
            if scalar.value >= 0x10000 { map.append(u8) }
            u8 += UTF8.width(scalar)
        }
        map.append(u8)
        let ns = NSString(string: s)
        var result: [Range<Int>] = []
        for m in regex.matches(in: s, options: [], range: NSRange(location: 0, length: ns.length)) {
            let a = m.range.location, b = m.range.location + m.range.length
            guard a >= 0, b < map.count else { continue }
            result.append(map[a] ..< map[b])
        }
        return result
    }
}
