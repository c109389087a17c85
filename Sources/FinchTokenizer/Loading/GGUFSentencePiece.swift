/// SentencePiece vocabularies of GGUF files (`tokenizer.ggml.model = "llama"`), built as
/// transformers builds them when it loads a tokenizer from a GGUF
/// (`integrations/gguf/gguf_tokenizer_mapping.py`), since that is the reference the ids are
/// checked against.
enum GGUFSentencePiece {
    /// Architectures whose vocabulary is Gemma's (`gemma_tokenizer` in transformers).
    static let gemmaArchitectures: Set<String> = ["gemma", "gemma2", "gemma3"]

    /// Python's `str.isspace` for one scalar (what `str.strip` removes).
    static func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
        (0x1C...0x1F).contains(s.value) || s.properties.isWhitespace
    }

    /// The merges a vocabulary without merges implies (transformers' `generate_merges`): every
    /// split of every token (by Unicode scalars, as Python slices strings) into two tokens,
    /// ordered by the merged token's `rank` (best first), then the longer left part first; the
    /// splits of one token by the ids of their parts. `vocab` maps each token to its last id.
    static func merges(tokens: [String], vocab: [TokenText: Int32], rank: (Int32) -> Int) -> [(String, String)] {
        var all: [(left: String, right: String, rank: Int, leftLength: Int)] = []
        var seen = Set<TokenText>()
        for token in tokens where seen.insert(TokenText(token)).inserted {
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [(String, String, Int32, Int32, Int)] = []
            for cut in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<cut]); r.append(contentsOf: scalars[cut...])
                let ls = String(l), rs = String(r)
                if let li = vocab[TokenText(ls)], let ri = vocab[TokenText(rs)] { local.append((ls, rs, li, ri, cut)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            let r = rank(vocab[TokenText(token)]!)
            for m in local { all.append((m.0, m.1, r, m.4)) }
        }
        // Python's sorted(..., key=(score, len(l), len(r)), reverse=True), stable.
        let order = all.indices.sorted { a, b in
            let x = all[a], y = all[b]
            if x.rank != y.rank { return x.rank > y.rank }
            if x.leftLength != y.leftLength { return x.leftLength > y.leftLength }
            return a < b
        }
        return order.map { (all[$0].left, all[$0].right) }
    }
}

extension Tokenizer {
    /// Gemma's vocabulary from a GGUF, as transformers' `gemma_tokenizer` + `GemmaTokenizer` build it:
    /// tokens of two or more spaces respelled with "▁", merges recovered from the vocabulary in
    /// file order (Gemma's scores do not follow its merge order), BPE with byte fallback, spaces
    /// normalized to "▁", control tokens special and user-defined tokens added whole.
    convenience init(gemmaGGUF g: GGUFTokenizerData) throws {
        guard !g.tokens.isEmpty else {
            throw TokenizerError.missingField(field: "tokenizer.ggml.tokens", source: "GGUF metadata")
        }
        // A token of spaces (and other blanks: Python's `" " in t and not t.strip()`) becomes "▁" × its length.
        let tokens = g.tokens.map { t in
            t.unicodeScalars.contains(" ") && t.unicodeScalars.allSatisfy(GGUFSentencePiece.isPythonSpace)
                ? String(repeating: "\u{2581}", count: t.unicodeScalars.count) : t
        }
        var vocab: [TokenText: Int32] = [:]   // the last id of a repeated token, as a Python dict keeps it
        vocab.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { vocab[TokenText(t)] = Int32(i) }
        let merges = g.merges.map { list in
            list.compactMap { m -> (String, String)? in
                let p = m.split(separator: " ", maxSplits: 1)
                return p.count == 2 ? (String(p[0]), String(p[1])) : nil
            }
        } ?? GGUFSentencePiece.merges(tokens: tokens, vocab: vocab, rank: { -Int($0) })
        let settings = g.settings(tokens: tokens, addBosDefault: true)
        let model = try BPEModel(vocab: vocab, merges: merges, byteLevel: false, unkToken: settings.unkToken ?? "<unk>",
                                 fuseUnk: true, byteFallback: true)
        var added: [AddedToken] = []
        if let types = g.tokenTypes {
            for (i, (t, type)) in zip(tokens, types).enumerated() {
                if type == 3 {
                    added.append(AddedToken(id: i, content: t, special: true, normalized: false))
                } else if type == 4, let id = vocab[TokenText(t)] {
                    added.append(AddedToken(id: Int(id), content: t, special: false, normalized: false))
                }
            }
        }
        self.init(model: model, addedTokens: added, normalizer: .replace(.string(" "), content: "\u{2581}"),
                  preTokenizer: .split(.string(" "), behavior: .mergedWithPrevious, invert: false),
                  decoder: .sequence([.replace(pattern: "\u{2581}", content: " "), .byteFallback, .fuse]),
                  postProcessor: nil, settings: settings)
    }
}
