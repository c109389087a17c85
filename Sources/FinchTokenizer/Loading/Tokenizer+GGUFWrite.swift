import FinchFormats

extension Tokenizer {
    /// llama.cpp's `tokenizer.ggml.*` metadata describing this tokenizer, for a GGUF export:
    /// model `gpt2` (byte-level BPE), the pre-tokenizer name, the vocabulary in id order with
    /// token types (control for special added tokens, user-defined for the other added ones),
    /// the merges as "a b", the special ids, `add_bos_token` / `add_eos_token` and the chat template.
    ///
    /// `pre` overrides the pre-tokenizer name; without it the name is recognised from this
    /// tokenizer's pre-tokenizer (GPT-2, SmolLM, Llama 3, Qwen2).
    /// - Throws: ``TokenizerError/unsupported(model:reason:)`` for a vocabulary that is not
    ///   byte-level, has gaps in its ids, or a pre-tokenizer llama.cpp would not reproduce.
    /// A SentencePiece Unigram vocabulary (T5's) is written as llama.cpp's `t5` tokenizer
    /// instead: see `ggufUnigramMetadata(vocabSize:)`, which `vocabSize` (the model's, when it
    /// has more rows than the tokenizer has ids) pads; byte-level BPE ignores it.
    public func ggufMetadata(pre: String? = nil, vocabSize modelVocabSize: Int? = nil) throws -> [(key: String, value: GGUFValue)] {
        if model is UnigramModel { return try ggufUnigramMetadata(vocabSize: modelVocabSize) }
        guard model.byteLevel, let bpe = model as? BPEModel else {
            throw TokenizerError.unsupported(model: "BPE", reason: "only byte-level BPE vocabularies are written to GGUF from a tokenizer.json (a SentencePiece vocabulary needs its scores: export from the GGUF the model came from)")
        }
        guard let pre = pre ?? ggufPreTokenizerName else {
            throw TokenizerError.unsupported(model: "BPE", reason: "the pre-tokenizer is none llama.cpp names (GPT-2, SmolLM, Llama 3, Qwen2); pass its llama.cpp name (tokenizer.ggml.pre) explicitly")
        }
        let added = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var tokens: [GGUFValue] = [], types: [GGUFValue] = []
        tokens.reserveCapacity(vocabSize)
        types.reserveCapacity(vocabSize)
        for id in 0..<vocabSize {
            if let a = added[id] {
                // llama.cpp spells added tokens as their text; byte-level spelling only for the model's own.
                tokens.append(.string(model.token(for: id) ?? a.content))
                types.append(.int32(a.special ? 3 : 4))
            } else if let t = model.token(for: id) {
                tokens.append(.string(t))
                types.append(.int32(1))
            } else {
                throw TokenizerError.unsupported(model: "BPE", reason: "token id \(id) has no token (the vocabulary has gaps), which a GGUF vocabulary cannot hold")
            }
        }
        var m: [(key: String, value: GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .array(tokens)),
            ("tokenizer.ggml.token_type", .array(types)),
            ("tokenizer.ggml.merges", .array(bpe.merges.map { .string($0.0 + " " + $0.1) })),
        ]
        if let b = bosTokenId { m.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(b)))) }
        if let e = eosTokenId { m.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(e)))) }
        if let u = unknownTokenId { m.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(u)))) }
        if let p = padTokenId { m.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(p)))) }
        m.append(("tokenizer.ggml.add_bos_token", .bool(addsBOS)))
        m.append(("tokenizer.ggml.add_eos_token", .bool(addsEOS)))
        if let t = chatTemplate { m.append(("tokenizer.chat_template", .string(t))) }
        return m
    }

    /// llama.cpp's `t5` tokenizer (its UGM vocabulary) as its converter writes it from T5's
    /// SentencePiece model: every piece with its score and type (normal 1, unknown 2 for the
    /// unknown piece, control 3 for special pieces of the model, user-defined 4 for added ones,
    /// byte 6 for `<0xXX>` pieces with byte fallback), ids past the tokenizer's up to `vocabSize`
    /// as `[PADi]` (unused 5, score -10000, as the converter pads), pre-tokenizer `default`,
    /// `add_space_prefix` / `remove_extra_whitespaces` from the Metaspace / WhitespaceSplit
    /// pre-tokenizer, the precompiled charsmap (SentencePiece's normalization) as bytes, the special
    /// ids and the add-BOS / add-EOS flags (T5 appends `</s>`).
    /// - Throws: ``TokenizerError/unsupported(model:reason:)`` for a normalizer or pre-tokenizer
    ///   llama.cpp's UGM tokenizer would not reproduce, or a `vocabSize` below the tokenizer's.
    public func ggufUnigramMetadata(vocabSize modelVocabSize: Int? = nil) throws -> [(key: String, value: GGUFValue)] {
        guard let unigram = model as? UnigramModel else {
            throw TokenizerError.unsupported(model: "BPE", reason: "llama.cpp's t5 tokenizer holds a SentencePiece Unigram vocabulary; this one is not")
        }
        let n = modelVocabSize ?? vocabSize
        guard n >= vocabSize else {
            throw TokenizerError.unsupported(model: "Unigram", reason: "the model has \(n) vocabulary rows but the tokenizer \(vocabSize) ids; a GGUF vocabulary must cover every id")
        }
        // llama.cpp's UGM tokenizer normalizes with the charsmap only, then (optionally) collapses
        // whitespace and puts ▁ before the text and for each space.
        var charsmap: [UInt8] = []
        switch normalizer {
        case nil: break
        case .sequence(let steps)? where steps.isEmpty: break
        case .precompiled(let map)?: charsmap = map.blob
        default:
            throw TokenizerError.unsupported(model: "Unigram", reason: "the normalizer is not a SentencePiece precompiled charsmap, the only normalization llama.cpp's t5 tokenizer applies")
        }
        let addSpacePrefix: Bool, removeExtraWhitespaces: Bool
        func metaspacePrefix(_ p: PreTokenizer) -> Bool? {
            guard case let .metaspace(replacement, scheme, _) = p, replacement == "\u{2581}" else { return nil }
            return scheme != "never"
        }
        switch preTokenizer {
        case .sequence(let steps)? where steps.count == 2 && { if case .whitespaceSplit = steps[0] { return true } else { return false } }()
                                         && metaspacePrefix(steps[1]) != nil:
            addSpacePrefix = metaspacePrefix(steps[1])!; removeExtraWhitespaces = true
        case let p? where metaspacePrefix(p) != nil:
            addSpacePrefix = metaspacePrefix(p)!; removeExtraWhitespaces = false
        default:
            throw TokenizerError.unsupported(model: "Unigram", reason: "the pre-tokenizer is not SentencePiece's (Metaspace with ▁, optionally after WhitespaceSplit), which llama.cpp's t5 tokenizer reproduces")
        }
        let added = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var tokens: [GGUFValue] = [], scores: [GGUFValue] = [], types: [GGUFValue] = []
        for id in 0..<n {
            let piece = id < unigram.idToToken.count ? unigram.idToToken[id] : nil
            if id == Int(unigram.unkId), let piece {
                tokens.append(.string(piece)); scores.append(.float32(Float(unigram.scores[id]))); types.append(.int32(2))
            } else if let a = added[id] {
                tokens.append(.string(a.content))
                scores.append(.float32(piece != nil ? Float(unigram.scores[id]) : -1000))
                // The converter: control for SentencePiece's own special pieces (<pad>, </s>),
                // user-defined for added ones (T5's <extra_id_N>, which llama.cpp then matches in text as tokenizers does).
                types.append(.int32(piece != nil && a.special ? 3 : 4))
            } else if let piece {
                let isByte = unigram.byteFallback && piece.utf8.count == 6 && piece.hasPrefix("<0x") && piece.hasSuffix(">")
                tokens.append(.string(piece)); scores.append(.float32(Float(unigram.scores[id]))); types.append(.int32(isByte ? 6 : 1))
            } else {
                tokens.append(.string("[PAD\(id)]")); scores.append(.float32(-10000)); types.append(.int32(5))
            }
        }
        var m: [(key: String, value: GGUFValue)] = [
            ("tokenizer.ggml.model", .string("t5")),
            ("tokenizer.ggml.pre", .string("default")),
            ("tokenizer.ggml.tokens", .array(tokens)),
            ("tokenizer.ggml.scores", .array(scores)),
            ("tokenizer.ggml.token_type", .array(types)),
            ("tokenizer.ggml.add_space_prefix", .bool(addSpacePrefix)),
            ("tokenizer.ggml.remove_extra_whitespaces", .bool(removeExtraWhitespaces)),
        ]
        if !charsmap.isEmpty { m.append(("tokenizer.ggml.precompiled_charsmap", .array(charsmap.map { .uint8($0) }))) }
        if let b = bosTokenId { m.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(b)))) }
        if let e = eosTokenId { m.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(e)))) }
        m.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(unigram.unkId))))
        if let p = padTokenId { m.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(p)))) }
        m.append(("tokenizer.ggml.add_bos_token", .bool(addsBOS)))
        m.append(("tokenizer.ggml.add_eos_token", .bool(addsEOS)))
        if let t = chatTemplate { m.append(("tokenizer.chat_template", .string(t))) }
        return m
    }

    /// llama.cpp's name for this tokenizer's pre-tokenizer, when it is one of those it implements
    /// the same way: GPT-2's byte-level regex, SmolLM's (digits alone, then GPT-2's), Llama 3's, Qwen2's.
    var ggufPreTokenizerName: String? {
        switch preTokenizer {
        case .byteLevel(_, _, useRegex: true)?:
            return "gpt-2"
        case .sequence(let steps)?:
            if steps.count == 2, case .digits(individualDigits: true) = steps[0], case .byteLevel(_, _, useRegex: true) = steps[1] {
                return "smollm"
            }
            if steps.count == 2, case .split(.regex(let pattern, _, _), _, _) = steps[0], case .byteLevel(_, _, useRegex: false) = steps[1] {
                if pattern == SplitScanners.llama3Pattern { return "llama-bpe" }
                if pattern == SplitScanners.qwen2Pattern { return "qwen2" }
            }
            return nil
        default:
            return nil
        }
    }
}

extension Tokenizer {
    /// A source GGUF's `tokenizer.*` metadata `m` with this tokenizer's added tokens past its
    /// vocabulary appended (and those inside it whose text differs, a padded vocabulary's `[PADi]`, put in place) (tokens added in training: their text, control type for special ones and
    /// user-defined for the others, score 0 where the source has scores), this tokenizer's EOS id
    /// and its chat template when it has them. The source's entries are kept as they are (Finch does not rewrite
    /// every vocabulary llama.cpp reads).
    /// - Throws: ``TokenizerError/unsupported(model:reason:)`` when the source has no token list or
    ///   an added id leaves a gap after it.
    public func extendingGGUFMetadata(_ m: [(key: String, value: GGUFValue)]) throws -> [(key: String, value: GGUFValue)] {
        guard let i = m.firstIndex(where: { $0.key == "tokenizer.ggml.tokens" }), case .array(var tokens) = m[i].value else {
            throw TokenizerError.unsupported(model: "GGUF", reason: "the source GGUF has no tokenizer.ggml.tokens to add tokens to")
        }
        var out = m
        let have = tokens.count
        // Tokens added inside the source's vocabulary (a padded one's `[PADi]` entries): their text and type in place.
        let inside = addedTokens.filter { a in
            guard a.id < have, case .string(let t) = tokens[a.id] else { return false }
            return t != a.content
        }
        if !inside.isEmpty {
            for a in inside { tokens[a.id] = .string(a.content) }
            out[i].value = .array(tokens)
            if let j = out.firstIndex(where: { $0.key == "tokenizer.ggml.token_type" }), case .array(var types) = out[j].value, types.count == have {
                for a in inside { types[a.id] = .int32(a.special ? 3 : 4) }
                out[j].value = .array(types)
            }
        }
        let added = addedTokens.filter { $0.id >= have }.sorted { $0.id < $1.id }
        if !added.isEmpty {
            for (k, a) in added.enumerated() where a.id != have + k {
                throw TokenizerError.unsupported(model: "GGUF", reason: "added token '\(a.content)' has id \(a.id) but the vocabulary ends at \(have + k - 1)")
            }
            tokens += added.map { .string($0.content) }
            out[i].value = .array(tokens)
            if let j = out.firstIndex(where: { $0.key == "tokenizer.ggml.token_type" }), case .array(let types) = out[j].value {
                out[j].value = .array(types + added.map { .int32($0.special ? 3 : 4) })
            }
            if let j = out.firstIndex(where: { $0.key == "tokenizer.ggml.scores" }), case .array(let scores) = out[j].value {
                out[j].value = .array(scores + added.map { _ in .float32(0) })
            }
        }
        if let e = eosTokenId {
            if let j = out.firstIndex(where: { $0.key == "tokenizer.ggml.eos_token_id" }) { out[j].value = .uint32(UInt32(e)) } else { out.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(e)))) }
        }
        if let t = chatTemplate {
            if let j = out.firstIndex(where: { $0.key == "tokenizer.chat_template" }) { out[j].value = .string(t) } else { out.append(("tokenizer.chat_template", .string(t))) }
        }
        return out
    }
}
