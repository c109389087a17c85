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
    public func ggufMetadata(pre: String? = nil) throws -> [(key: String, value: GGUFValue)] {
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
