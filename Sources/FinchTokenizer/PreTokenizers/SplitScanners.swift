/// Hand-written scanners equivalent to the split regexes of the common byte-level tokenizers
/// (matched with "isolated" behaviour: every character ends up in exactly one piece).
///
/// They follow Oniguruma's leftmost-alternative semantics exactly, including the backtracking of
/// `\s+(?!\S)` (a run of whitespace followed by a non-space gives up its last character to the next
/// piece) and `\s*[\r\n]+` (a run of whitespace ends after its last line break).
/// Each appends byte ranges `[start, end)` of `p[0..<n]`, shifted by `base`, to `out`.
enum SplitScanners {
    /// GPT-2 (also `ByteLevel(use_regex: true)`):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// LLaMA 3 (`llama-bpe`, `llama3`, ...):
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Qwen2 / Qwen2.5 (`qwen2`, `deepseek-r1-qwen`): LLaMA 3's with single digits.
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Which scanner handles a regex pattern string exactly, if any.
    static func kind(forPattern pattern: String) -> Kind? {
        switch pattern {
        case gpt2Pattern: return .gpt2
        case llama3Pattern: return .llama3
        case qwen2Pattern: return .qwen2
        default: return nil
        }
    }

    enum Kind: Sendable { case gpt2, llama3, qwen2 }

    static func split(_ kind: Kind, _ p: UnsafePointer<UInt8>, _ n: Int, base: Int, into out: inout [Range<Int>]) {
        switch kind {
        case .gpt2: gpt2(p, n, base: base, into: &out)
        case .llama3: llama3(p, n, maxDigits: 3, base: base, into: &out)
        case .qwen2: llama3(p, n, maxDigits: 1, base: base, into: &out)
        }
    }

    /// Runs of whitespace starting at `i`: end, start of the last scalar, count, and the end of the
    /// last `\r`/`\n` in the run (or -1).
    @inline(__always)
    private static func whitespaceRun(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int,
                                      _ t: UnsafeMutablePointer<UInt8>) -> (end: Int, lastStart: Int, count: Int, lastNewlineEnd: Int) {
        var k = i, lastStart = i, count = 0, nl = -1
        while k < n {
            let (c, l) = utf8Decode(p, k, n)
            if CharClass.of(c, t) != CharClass.space { break }
            if c == 0x0A || c == 0x0D { nl = k + l }
            lastStart = k
            k += l
            count += 1
        }
        return (k, lastStart, count, nl)
    }

    @inline(__always)
    private static func run(_ p: UnsafePointer<UInt8>, _ n: Int, from i: Int, cls: UInt8,
                            _ t: UnsafeMutablePointer<UInt8>, limit: Int = Int.max) -> Int {
        var j = i, count = 0
        while j < n && count < limit {
            let (c, l) = utf8Decode(p, j, n)
            if CharClass.of(c, t) != cls { break }
            j += l
            count += 1
        }
        return j
    }

    static func gpt2(_ p: UnsafePointer<UInt8>, _ n: Int, base: Int, into out: inout [Range<Int>]) {
        let t = CharClass.bmpTable
        var i = 0
        while i < n {
            let b = p[i]
            // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
            if b == 0x27, i + 1 < n {
                let c1 = p[i + 1]
                if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {  // s t m d
                    out.append(base + i ..< base + i + 2); i += 2; continue
                }
                if i + 2 < n {
                    let c2 = p[i + 2]
                    if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {
                        out.append(base + i ..< base + i + 3); i += 3; continue
                    }
                }
            }
            let (c, l) = utf8Decode(p, i, n)
            var cls = CharClass.of(c, t)
            var bodyStart = i + l
            if c == 0x20, i + 1 < n {
                let (c2, l2) = utf8Decode(p, i + 1, n)
                let k2 = CharClass.of(c2, t)
                if k2 != CharClass.space { cls = k2; bodyStart = i + 1 + l2 }
            }
            if cls != CharClass.space {
                // ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+`
                let j = run(p, n, from: bodyStart, cls: cls, t)
                out.append(base + i ..< base + j)
                i = j
                continue
            }
            let r = whitespaceRun(p, n, i, t)
            if r.end == n || r.count == 1 {
                out.append(base + i ..< base + r.end); i = r.end
            } else {
                out.append(base + i ..< base + r.lastStart); i = r.lastStart
            }
        }
    }

    @inline(__always)
    private static func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

    /// Length of a case-insensitive contraction at `i` (which holds `'`), or 0.
    @inline(__always)
    private static func contraction(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Int {
        guard i + 1 < n else { return 0 }
        let c1 = lower(p[i + 1])
        if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return 2 }
        // U+017F LATIN SMALL LETTER LONG S case-folds to "s" under Oniguruma's (?i).
        if p[i + 1] == 0xC5, i + 2 < n, p[i + 2] == 0xBF { return 3 }
        if i + 2 < n {
            let c2 = lower(p[i + 2])
            if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) { return 3 }
        }
        return 0
    }

    static func llama3(_ p: UnsafePointer<UInt8>, _ n: Int, maxDigits: Int, base: Int, into out: inout [Range<Int>]) {
        let t = CharClass.bmpTable
        var i = 0
        while i < n {
            if p[i] == 0x27 {
                let k = contraction(p, n, i)
                if k > 0 { out.append(base + i ..< base + i + k); i += k; continue }
            }
            let (c, l) = utf8Decode(p, i, n)
            let cls = CharClass.of(c, t)
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if cls == CharClass.letter {
                let j = run(p, n, from: i + l, cls: CharClass.letter, t)
                out.append(base + i ..< base + j); i = j; continue
            }
            if cls != CharClass.number && c != 0x0A && c != 0x0D && i + l < n {
                let (c2, _) = utf8Decode(p, i + l, n)
                if CharClass.of(c2, t) == CharClass.letter {
                    let j = run(p, n, from: i + l, cls: CharClass.letter, t)
                    out.append(base + i ..< base + j); i = j; continue
                }
            }
            // \p{N}{1,maxDigits}
            if cls == CharClass.number {
                let j = run(p, n, from: i, cls: CharClass.number, t, limit: maxDigits)
                out.append(base + i ..< base + j); i = j; continue
            }
            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            var otherStart = -1
            if cls == CharClass.other {
                otherStart = i
            } else if c == 0x20, i + 1 < n {
                let (c2, _) = utf8Decode(p, i + 1, n)
                if CharClass.of(c2, t) == CharClass.other { otherStart = i + 1 }
            }
            if otherStart >= 0 {
                var j = run(p, n, from: otherStart, cls: CharClass.other, t)
                while j < n && (p[j] == 0x0A || p[j] == 0x0D) { j += 1 }
                out.append(base + i ..< base + j); i = j; continue
            }
            // whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
            let r = whitespaceRun(p, n, i, t)
            if r.lastNewlineEnd > 0 {
                out.append(base + i ..< base + r.lastNewlineEnd); i = r.lastNewlineEnd
            } else if r.end == n || r.count == 1 {
                out.append(base + i ..< base + r.end); i = r.end
            } else {
                out.append(base + i ..< base + r.lastStart); i = r.lastStart
            }
        }
    }
}
