/// The tokenizer part of a GGUF file's metadata (llama.cpp's `tokenizer.ggml.*` keys), in plain types.
public struct GGUFTokenizerData: Sendable {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer name ("smollm", "llama-bpe", "qwen2", "default", ...).
    public var pre: String?
    /// `tokenizer.ggml.tokens`: the vocabulary in id order.
    public var tokens: [String]
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: [Int]?
    /// `tokenizer.ggml.merges`: "a b" strings in rank order.
    public var merges: [String]?
    /// `tokenizer.ggml.{bos,eos,unknown,padding}_token_id`.
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var unknownTokenId: Int?
    public var paddingTokenId: Int?
    /// End-of-turn / end-of-message ids (`tokenizer.ggml.eot_token_id`, `eom_token_id`).
    public var eotTokenId: Int?
    public var eomTokenId: Int?
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` (absent: false, as transformers reads them).
    public var addBosToken: Bool?
    public var addEosToken: Bool?
    /// `tokenizer.chat_template`.
    public var chatTemplate: String?
    /// `general.architecture`: a SentencePiece (`llama`) vocabulary is built per architecture, as transformers does.
    public var architecture: String?

    /// Memberwise initializer (for tests and for callers that read GGUF metadata themselves).

    public init(model: String, pre: String? = nil, tokens: [String], tokenTypes: [Int]? = nil, merges: [String]? = nil,
                bosTokenId: Int? = nil, eosTokenId: Int? = nil, unknownTokenId: Int? = nil, paddingTokenId: Int? = nil,
                eotTokenId: Int? = nil, eomTokenId: Int? = nil, addBosToken: Bool? = nil, addEosToken: Bool? = nil,
                chatTemplate: String? = nil) {
        self.model = model
        self.pre = pre
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.unknownTokenId = unknownTokenId
        self.paddingTokenId = paddingTokenId
        self.eotTokenId = eotTokenId
        self.eomTokenId = eomTokenId
        self.addBosToken = addBosToken
        self.addEosToken = addEosToken
        self.chatTemplate = chatTemplate
    }
}

/// How a GGUF pre-tokenizer name becomes a pre-tokenizer.
///
/// We build exactly what transformers builds when it loads a tokenizer from a GGUF
/// (`integrations/gguf/gguf_tokenizer_mapping.py`, `GGUF_PRE_TOKENIZER_SPLITS`), since that is the
/// reference our ids are checked against:
/// - a name in transformers' table (LLaMA 3 family, Qwen2 family, tekken, gpt-4o family) gets
///   `Sequence[Split(<regex>, isolated), ByteLevel(add_prefix_space: false, use_regex: false)]`;
/// - every other name ("gpt2", "smollm", "default", "starcoder", ...) keeps `GPT2Tokenizer`'s
///   `ByteLevel(add_prefix_space: false, use_regex: true)`, i.e. GPT-2's regex.
///
/// llama.cpp (`llama-vocab.cpp`) differs for some names: "smollm" there splits every digit first
/// (`\p{N}`) and then applies GPT-2's regex, which is also what SmolLM2's own tokenizer.json does
/// (`Sequence[Digits(individual_digits), ByteLevel]`); since the SmolLM2 vocabulary has no
/// multi-digit tokens the ids agree. "default" in llama.cpp uses a set of four regexes
/// (punctuation runs, GPT-2's regex without its last `\s+`, digit runs, groups of three ASCII
/// digits) that neither transformers nor this library reproduces; "llama-bpe"/"llama3" and
/// "qwen2" are the same regexes as transformers'.
enum GGUFPreTokenizers {
    static let llama3Names: Set<String> = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                           "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"]
    static let qwen2Names: Set<String> = ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"]
    static let tekkenPattern = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt4oPattern = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt4oNames: Set<String> = ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"]

    /// The split regex transformers uses for `name`, or nil for GPT-2's ByteLevel default.
    static func splitPattern(for name: String?) -> String? {
        guard let name else { return nil }
        if llama3Names.contains(name) { return SplitScanners.llama3Pattern }
        if qwen2Names.contains(name) { return SplitScanners.qwen2Pattern }
        if name == "tekken" { return tekkenPattern }
        if gpt4oNames.contains(name) { return gpt4oPattern }
        return nil
    }

    static func preTokenizer(for name: String?) throws -> PreTokenizer {
        guard let pattern = splitPattern(for: name) else {
            return .byteLevel(addPrefixSpace: false, trimOffsets: true, useRegex: true)
        }
        return .sequence([.split(try .regex(pattern), behavior: .isolated, invert: false),
                          .byteLevel(addPrefixSpace: false, trimOffsets: true, useRegex: false)])
    }
}

extension Tokenizer {
    /// Builds the tokenizer a GGUF file describes, the way transformers does
    /// (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).
    ///
    /// - Throws: `TokenizerError.unsupported` for SentencePiece-style (`llama`) and other
    ///   non-byte-level vocabularies, and for malformed merges.
    public convenience init(ggufTokenizer g: GGUFTokenizerData) throws {
        if g.model == "llama", let arch = g.architecture, GGUFSentencePiece.gemmaArchitectures.contains(arch) {
            try self.init(gemmaGGUF: g)
            return
        }
        guard g.model == "gpt2" else {
            let reason = g.model == "llama"
                ? "SentencePiece-style GGUF vocabularies are implemented for Gemma only (this file's architecture is '\(g.architecture ?? "unknown")'); load the model's Hugging Face directory (tokenizer.json) instead"
                : "only byte-level BPE (\"gpt2\") and Gemma's SentencePiece GGUF vocabularies are implemented"
            throw TokenizerError.unsupported(model: g.model, reason: reason)
        }
        guard !g.tokens.isEmpty else {
            throw TokenizerError.missingField(field: "tokenizer.ggml.tokens", source: "GGUF metadata")
        }
        guard let mergeStrings = g.merges else {
            throw TokenizerError.missingField(field: "tokenizer.ggml.merges", source: "GGUF metadata")
        }
        // Tokens outside the byte-level alphabet are respelled from their UTF-8 bytes.
        var vocab: [TokenText: Int32] = [:]
        vocab.reserveCapacity(g.tokens.count)
        for (i, t) in g.tokens.enumerated() {
            let spelled = ByteLevel.isSpelled(t) ? t : ByteLevel.encode(t.utf8)
            vocab[TokenText(spelled)] = Int32(i)
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeStrings.count)
        for (i, m) in mergeStrings.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw TokenizerError.invalidMerge(index: i, merge: m, reason: "expected two tokens separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        let model = try BPEModel(vocab: vocab, merges: merges, byteLevel: true)

        // Control tokens become special added tokens, user-defined ones plain added tokens.
        var added: [AddedToken] = []
        if let types = g.tokenTypes {
            for (i, (t, type)) in zip(g.tokens, types).enumerated() {
                if type == 3 && ByteLevel.isSpelled(t) {
                    added.append(AddedToken(id: vocab[TokenText(t)].map(Int.init) ?? i, content: t, special: true, normalized: false))
                } else if type == 4, let id = vocab[TokenText(t)] {
                    added.append(AddedToken(id: Int(id), content: t, special: false, normalized: false))
                }
            }
        }
        self.init(model: model, addedTokens: added, normalizer: nil,
                  preTokenizer: try GGUFPreTokenizers.preTokenizer(for: g.pre), decoder: .byteLevel,
                  postProcessor: nil, settings: g.settings(tokens: g.tokens, addBosDefault: false))
    }
}

extension GGUFTokenizerData {
    /// The special tokens, BOS / EOS flags and chat template, the ids named in `tokens` (the
    /// vocabulary as the tokenizer spells it); `add_bos_token` absent means `addBosDefault`.
    func settings(tokens: [String], addBosDefault: Bool) -> TokenizerSettings {
        func name(_ id: Int?) -> String? {
            guard let id, id >= 0, id < tokens.count else { return nil }
            return tokens[id]
        }
        var settings = TokenizerSettings()
        settings.bosToken = name(bosTokenId)
        settings.eosToken = name(eosTokenId)
        settings.unkToken = name(unknownTokenId)
        settings.padToken = name(paddingTokenId)
        settings.extraEosTokens = [name(eotTokenId), name(eomTokenId)].compactMap { $0 }
        settings.addBosToken = addBosToken ?? addBosDefault
        settings.addEosToken = addEosToken ?? false
        settings.chatTemplate = chatTemplate
        return settings
    }
}
