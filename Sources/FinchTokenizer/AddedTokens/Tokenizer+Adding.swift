extension Tokenizer {
    /// A copy with `tokens` added, as Hugging Face's `add_special_tokens` / `add_tokens` add them
    /// (`tokenizers.Tokenizer.add_special_tokens` / `add_tokens`): a text the vocabulary already holds
    /// keeps its id (and becomes an added token, matched whole); a new one gets the next id (the size
    /// at that moment), in order; `normalized` is `!special`; the other flags false. A text that is
    /// already an added token is left as it is. `added`: the id of each of `tokens`.
    /// - Throws: ``TokenizerError/invalidField(field:source:reason:)`` for an empty token.
    public func adding(_ tokens: [String], special: Bool) throws -> (tokenizer: Tokenizer, added: [Int]) {
        var all = addedTokens
        var contents = Dictionary(uniqueKeysWithValues: all.map { ($0.content, $0.id) })
        var next = vocabSize
        var ids: [Int] = []
        for t in tokens {
            guard !t.isEmpty else { throw TokenizerError.invalidField(field: "added token", source: "tokens to add", reason: "an added token is empty") }
            if let id = contents[t] { ids.append(id); continue }
            let id: Int
            if let known = model.vocab[TokenText(t)].map(Int.init) {
                id = known
            } else {
                id = next
                next += 1
            }
            all.append(AddedToken(id: id, content: t, special: special))
            contents[t] = id
            ids.append(id)
        }
        return (rebuilt(addedTokens: all, settings: settings), ids)
    }
}

extension Tokenizer {
    /// A copy whose end-of-sequence token is `token` (a token of the vocabulary or an added one), as
    /// `tokenizer.eos_token = token` sets it in transformers (TRL's `eos_token`): generation stops on it,
    /// the data's EOS is it, and it is written with the tokenizer (`tokenizer_config.json`, GGUF's
    /// `eos_token_id`). The other end-of-turn ids stay.
    /// - Throws: ``TokenizerError/invalidField(field:source:reason:)`` when `token` is no single token.
    public func withEOS(_ token: String) throws -> Tokenizer {
        var s = settings
        s.eosToken = token
        let t = rebuilt(addedTokens: addedTokens, settings: s)
        guard t.eosTokenId != nil else {
            throw TokenizerError.invalidField(field: "eos_token", source: "eos_token", reason: "'\(token)' is not a token of the vocabulary; add it first (add_special_tokens)")
        }
        return t
    }
}

extension Tokenizer {
    /// Whether `other` reads and ends text as this one does as far as a run can change it: the same number of ids,
    /// the same added tokens (id, text, special) and the same end-of-sequence id. A tokenizer saved beside an adapter
    /// that differs from the model's was changed by its run (tokens added, another EOS).
    public func sameVocabulary(as other: Tokenizer) -> Bool {
        func key(_ t: Tokenizer) -> [String] { t.addedTokens.map { "\($0.id)\u{0}\($0.content)\u{0}\($0.special)" } }
        return vocabSize == other.vocabSize && eosTokenId == other.eosTokenId && key(self) == key(other)
    }
}

extension Tokenizer {
    /// This tokenizer with other added tokens and settings (the same model, normalizer, pre-tokenizer, decoder and
    /// post-processor), its chat template kept.
    func rebuilt(addedTokens: [AddedToken], settings: TokenizerSettings) -> Tokenizer {
        let t = Tokenizer(model: model, addedTokens: addedTokens, normalizer: normalizer, preTokenizer: preTokenizer,
                          decoder: decoder, postProcessor: postProcessor, settings: settings)
        t.chatTemplate = chatTemplate
        return t
    }
}
