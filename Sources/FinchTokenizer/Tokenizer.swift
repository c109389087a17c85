/// Special tokens and settings that come from tokenizer_config.json (or GGUF metadata) rather
/// than from the tokenization pipeline itself.
struct TokenizerSettings: Sendable {
    var bosToken: String?
    var eosToken: String?
    var padToken: String?
    var unkToken: String?
    /// Further end-of-generation tokens (e.g. GGUF `eot_token_id`), besides `eosToken`.
    var extraEosTokens: [String] = []
    /// nil: not stated (the post-processor decides).
    var addBosToken: Bool?
    var addEosToken: Bool?
    var chatTemplate: String?
    var modelMaxLength: Int?
}

/// A byte-pair-encoding tokenizer (GPT-2 / LLaMA 3 / Qwen2 / SmolLM style), loaded from a
/// Hugging Face `tokenizer.json` or from GGUF metadata, producing the same ids as HF `tokenizers`.
///
/// The pipeline is: added tokens matched whole in the raw text → normalizer → added tokens
/// matched in normalized text → pre-tokenizer (split into words) → BPE per word →
/// post-processor (BOS/EOS, only with `addSpecialTokens`).
///
/// A `Tokenizer` is immutable and safe to share between threads.
public final class Tokenizer: @unchecked Sendable {
    let model: any TokenModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: TokenDecoder?
    let postProcessor: PostProcessor?
    let settings: TokenizerSettings
    /// Every added token, in id order.
    public let addedTokens: [AddedToken]
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    private let addedById: [Int: AddedToken]
    private let addedByContent: [String: AddedToken]
    private let specialIds: Set<Int>
    /// Byte-level decoding: the bytes each id spells (flat storage + offsets).
    private let tokenByteStorage: [UInt8]
    private let tokenByteOffsets: [Int32]
    /// The parsed chat template, built on first use.
    let templateCache = TemplateCache()

    /// Number of ids: one more than the largest id of the vocabulary or the added tokens.
    public let vocabSize: Int
    /// The beginning-of-sequence token, if the tokenizer has one.
    public let bosToken: String?
    /// The id of `bosToken`.
    public let bosTokenId: Int?
    /// The end-of-sequence token.
    public let eosToken: String?
    /// The id of `eosToken`.
    public let eosTokenId: Int?
    /// Every id that ends generation: `eosTokenId` first, then any end-of-turn ids the model declares.
    public let eosTokenIds: [Int]
    /// The padding token.
    public let padToken: String?
    /// The id of `padToken`.
    public let padTokenId: Int?
    /// The unknown token (GGUF `unknown_token_id`, or the BPE model's `unk_token`).
    public let unknownToken: String?
    /// The id of `unknownToken`.
    public let unknownTokenId: Int?
    /// The Jinja chat template, if the tokenizer carries one.
    public var chatTemplate: String?
    /// Whether `encode(addSpecialTokens: true)` adds a BOS token.
    public let addsBOS: Bool
    /// Whether `encode(addSpecialTokens: true)` adds an EOS token.
    public let addsEOS: Bool

    init(model: any TokenModel, addedTokens: [AddedToken], normalizer: Normalizer?, preTokenizer: PreTokenizer?,
         decoder: TokenDecoder?, postProcessor: PostProcessor?, settings: TokenizerSettings) {
        self.model = model
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.decoder = decoder
        self.settings = settings
        let sortedAdded = addedTokens.sorted { $0.id < $1.id }
        self.addedTokens = sortedAdded
        rawMatcher = AddedTokenMatcher(sortedAdded.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(sortedAdded.filter { $0.normalized })
        var byId: [Int: AddedToken] = [:]
        var byContent: [String: AddedToken] = [:]
        for t in sortedAdded { byId[t.id] = t; byContent[t.content] = t }
        addedById = byId
        addedByContent = byContent
        specialIds = Set(sortedAdded.filter(\.special).map(\.id))
        vocabSize = max(model.idToToken.count, (sortedAdded.map(\.id).max() ?? -1) + 1)

        func lookup(_ t: String?) -> Int? {
            guard let t else { return nil }
            if let a = byContent[t] { return a.id }
            return model.vocab[TokenText(t)].map(Int.init)
        }
        bosToken = settings.bosToken
        bosTokenId = lookup(settings.bosToken)
        eosToken = settings.eosToken
        eosTokenId = lookup(settings.eosToken)
        var eosIds: [Int] = []
        for t in [settings.eosToken] + settings.extraEosTokens.map(Optional.some) {
            if let id = lookup(t), !eosIds.contains(id) { eosIds.append(id) }
        }
        eosTokenIds = eosIds
        padToken = settings.padToken
        padTokenId = lookup(settings.padToken)
        unknownToken = settings.unkToken ?? model.unkToken
        unknownTokenId = lookup(settings.unkToken ?? model.unkToken)
        chatTemplate = settings.chatTemplate

        // transformers rebuilds the post-processor when add_bos_token / add_eos_token are stated.
        var post = postProcessor
        if settings.addBosToken != nil || settings.addEosToken != nil {
            let bos = (settings.addBosToken ?? false) ? settings.bosToken.flatMap { b in lookup(b).map { (b, $0) } } : nil
            let eos = (settings.addEosToken ?? false) ? settings.eosToken.flatMap { e in lookup(e).map { (e, $0) } } : nil
            post = PostProcessor.bosEos(bos: bos, eos: eos)
        }
        self.postProcessor = post
        let probe = post?.process([]) ?? []
        addsBOS = bosTokenId.map { b in probe.first.map { Int($0) == b } ?? false } ?? false
        addsEOS = eosTokenId.map { e in probe.last.map { Int($0) == e } ?? false } ?? false

        // Bytes per id for byte-level decoding and streaming.
        var storage: [UInt8] = []
        var offsets: [Int32] = [0]
        storage.reserveCapacity(vocabSize * 6)
        offsets.reserveCapacity(vocabSize + 1)
        for id in 0..<vocabSize {
            let text = byId[id]?.content ?? model.token(for: id)
            if let text {
                if model.byteLevel, byId[id] == nil || ByteLevel.isSpelled(text), let b = ByteLevel.decode(text) {
                    storage.append(contentsOf: b)
                } else {
                    storage.append(contentsOf: text.utf8)
                }
            }
            offsets.append(Int32(storage.count))
        }
        tokenByteStorage = storage
        tokenByteOffsets = offsets
    }

    // MARK: - Vocabulary

    /// The id of a token (added tokens first, then the model vocabulary), spelled as the vocabulary
    /// spells it (byte-level vocabularies write a space as `Ġ`).
    public func id(for token: String) -> Int? {
        if let a = addedByContent[token] { return a.id }
        return model.vocab[TokenText(token)].map(Int.init)
    }

    /// The token text of an id, as the vocabulary spells it.
    public func token(for id: Int) -> String? {
        if let a = addedById[id] { return a.content }
        return model.token(for: id)
    }

    /// Whether `id` is a special added token (dropped by `decode(skipSpecialTokens: true)`).
    public func isSpecial(_ id: Int) -> Bool { specialIds.contains(id) }

    /// Whether the vocabulary uses GPT-2's byte-level alphabet.
    public var isByteLevel: Bool { model.byteLevel }

    /// The special tokens by role, as transformers passes them to chat templates
    /// (`bos_token`, `eos_token`, `unk_token`, `pad_token`).
    public var specialTokensMap: [String: String] {
        var m: [String: String] = [:]
        if let b = bosToken { m["bos_token"] = b }
        if let e = eosToken { m["eos_token"] = e }
        if let u = unknownToken { m["unk_token"] = u }
        if let p = padToken { m["pad_token"] = p }
        return m
    }

    // MARK: - Encoding

    /// Token ids of `text`. With `addSpecialTokens`, the post-processor adds what the tokenizer's
    /// configuration asks for (e.g. a BOS token when `addsBOS`).
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        encode32(text, addSpecialTokens: addSpecialTokens).map(Int.init)
    }

    /// The id of `text` when it encodes to exactly one token (a scoring answer such as "A" or "1"),
    /// nil when it takes several or none.
    public func singleTokenId(_ text: String) -> Int? {
        let ids = encode(text)
        return ids.count == 1 ? ids[0] : nil
    }

    /// `encode` with 32-bit ids (what models consume), avoiding a conversion.
    public func encode32(_ text: String, addSpecialTokens: Bool = false) -> [Int32] {
        var ids: [Int32] = []
        let bytes = Array(text.utf8)
        ids.reserveCapacity(bytes.count / 3 + 4)
        var words: [ArraySlice<UInt8>] = []
        bytes.withUnsafeBufferPointer { buf in
            for split in rawMatcher.split(buf, 0 ..< buf.count) {
                if let t = split.token { ids.append(Int32(t.id)); continue }
                if split.range.isEmpty { continue }
                let segment: [UInt8]
                if let normalizer {
                    let s = String(decoding: buf[split.range], as: UTF8.self)
                    segment = Array(normalizer.normalize(s).utf8)
                } else {
                    segment = Array(buf[split.range])
                }
                encodeSegment(segment, isFirst: split.range.lowerBound == 0, words: &words, into: &ids)
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.process(ids) }
        return ids
    }

    private func encodeSegment(_ segment: [UInt8], isFirst: Bool, words: inout [ArraySlice<UInt8>], into ids: inout [Int32]) {
        let slice = segment[...]
        let pieces: [AddedTokenMatcher.Split] = normalizedMatcher.isEmpty
            ? [AddedTokenMatcher.Split(range: 0 ..< segment.count, token: nil)]
            : segment.withUnsafeBufferPointer { normalizedMatcher.split($0, 0 ..< $0.count) }
        for piece in pieces {
            if let t = piece.token { ids.append(Int32(t.id)); continue }
            if piece.range.isEmpty { continue }
            words.removeAll(keepingCapacity: true)
            if let preTokenizer {
                preTokenizer.preTokenize(slice[piece.range], isFirstSegment: isFirst && piece.range.lowerBound == 0,
                                         into: &words)
            } else {
                words.append(slice[piece.range])
            }
            for w in words { model.encodeWord(w, into: &ids) }
        }
    }

    // MARK: - Decoding

    /// The text of `ids`. Ids outside the vocabulary are skipped; with `skipSpecialTokens`,
    /// special added tokens are too.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        if let decoder, decoder.isPureByteLevel {
            var bytes: [UInt8] = []
            for id in ids { appendBytes(of: id, skipSpecialTokens: skipSpecialTokens, to: &bytes) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let tokens = ids.compactMap { id -> String? in
            if skipSpecialTokens && specialIds.contains(id) { return nil }
            return token(for: id)
        }
        if let decoder { return decoder.decode(tokens) }
        return tokens.joined(separator: " ")
    }

    /// The bytes one token spells on its own (byte-level vocabularies: its exact bytes, which
    /// may be part of a character; others: the UTF-8 of its decoded text).
    public func tokenBytes(_ id: Int) -> [UInt8] {
        if decodesBytewise {
            var bytes: [UInt8] = []
            appendBytes(of: id, skipSpecialTokens: false, to: &bytes)
            return bytes
        }
        return Array(decode([id]).utf8)
    }

    /// Appends what one id spells under the byte-level decoder.
    func appendBytes(of id: Int, skipSpecialTokens: Bool, to bytes: inout [UInt8]) {
        guard id >= 0, id < vocabSize else { return }
        if skipSpecialTokens && specialIds.contains(id) { return }
        let a = Int(tokenByteOffsets[id]), b = Int(tokenByteOffsets[id + 1])
        if a < b { bytes.append(contentsOf: tokenByteStorage[a ..< b]) }
    }

    /// Whether streaming can work on bytes (decoder is exactly byte-level).
    var decodesBytewise: Bool { decoder?.isPureByteLevel ?? false }

    /// A decoder that turns ids into text one at a time, for streaming generation.
    public func streamDecoder(skipSpecialTokens: Bool = false) -> TokenStreamDecoder {
        TokenStreamDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}
