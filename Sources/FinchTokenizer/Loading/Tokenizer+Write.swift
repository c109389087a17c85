import FinchFormats
import Foundation

extension Tokenizer {
    /// Writes `tokenizer.json` and `tokenizer_config.json` (Hugging Face layout) into `directory`,
    /// describing this tokenizer whatever it was loaded from, so that HF `tokenizers` /
    /// transformers load it and produce the same ids.
    public func writeTokenizerJSON(to directory: String) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TokenizerError.io(path: directory, reason: "cannot create directory: \(error)")
        }
        let dir = URL(fileURLWithPath: directory)
        try write(try tokenizerJSONValue().serialized(indent: 2, compactLeaves: true) + "\n",
                  to: dir.appendingPathComponent("tokenizer.json").path)
        try write(tokenizerConfigValue().serialized(indent: 2) + "\n",
                  to: dir.appendingPathComponent("tokenizer_config.json").path)
    }

    /// Replaces the file atomically (written to a temporary sibling, flushed, renamed).
    private func write(_ text: String, to path: String) throws {
        do {
            try AtomicFile.write(to: path) { try $0.write([UInt8](text.utf8)) }
        } catch {
            throw TokenizerError.io(path: path, reason: "cannot write file: \(error)")
        }
    }

    func addedTokenJSON(_ t: AddedToken, withId: Bool) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        if withId { m.append(("id", .number(String(t.id)))) }
        m += [("content", .string(t.content)), ("single_word", .bool(t.singleWord)), ("lstrip", .bool(t.lstrip)),
              ("rstrip", .bool(t.rstrip)), ("normalized", .bool(t.normalized)), ("special", .bool(t.special))]
        return .object(m)
    }

    /// The tokenizer.json document.
    func tokenizerJSONValue() throws -> JSONValue {
        let modelJSON: JSONValue
        if let unigram = model as? UnigramModel {
            modelJSON = .object([
                ("type", .string("Unigram")),
                ("unk_id", .number(String(unigram.unkId))),
                ("vocab", .array(zip(unigram.idToToken, unigram.scores).map { .array([.string($0 ?? ""), .number(String($1))]) })),
                ("byte_fallback", .bool(unigram.byteFallback)),
            ])
        } else {
            guard let bpe = model as? BPEModel else {
                throw TokenizerError.unsupported(model: "\(type(of: model))", reason: "only BPE and Unigram tokenizers can be written as tokenizer.json")
            }
            var vocabMembers: [(key: String, value: JSONValue)] = []
            vocabMembers.reserveCapacity(bpe.idToToken.count)
            for (id, t) in bpe.idToToken.enumerated() {
                if let t { vocabMembers.append((t, .number(String(id)))) }
            }
            modelJSON = .object([
                ("type", .string("BPE")),
                ("dropout", .null),
                ("unk_token", bpe.unkToken.map { .string($0) } ?? .null),
                ("continuing_subword_prefix", .null),
                ("end_of_word_suffix", .null),
                ("fuse_unk", .bool(bpe.fuseUnk)),
                ("byte_fallback", .bool(bpe.byteFallback)),
                ("ignore_merges", .bool(bpe.ignoreMerges)),
                ("vocab", .object(vocabMembers)),
                ("merges", .array(bpe.merges.map { .array([.string($0.0), .string($0.1)]) })),
            ])
        }
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(addedTokens.map { addedTokenJSON($0, withId: true) })),
            ("normalizer", normalizer?.json ?? .null),
            ("pre_tokenizer", preTokenizer?.json ?? .null),
            ("post_processor", postProcessor?.json ?? .null),
            ("decoder", decoder?.json ?? .null),
            ("model", modelJSON),
        ])
    }

    /// The tokenizer_config.json document (transformers' settings and the chat template).
    func tokenizerConfigValue() -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        m.append(("add_bos_token", .bool(addsBOS)))
        m.append(("add_eos_token", .bool(addsEOS)))
        m.append(("added_tokens_decoder", .object(addedTokens.map { (String($0.id), addedTokenJSON($0, withId: false)) })))
        if let b = bosToken { m.append(("bos_token", .string(b))) }
        if let t = chatTemplate { m.append(("chat_template", .string(t))) }
        m.append(("clean_up_tokenization_spaces", .bool(false)))
        if let e = eosToken { m.append(("eos_token", .string(e))) }
        if let n = settings.modelMaxLength { m.append(("model_max_length", .number(String(n)))) }
        if let p = padToken { m.append(("pad_token", .string(p))) }
        m.append(("tokenizer_class", .string("PreTrainedTokenizerFast")))
        if let u = unknownToken { m.append(("unk_token", .string(u))) }
        return .object(m)
    }
}

extension SplitPattern {
    var json: JSONValue {
        switch self {
        case .string(let s): return .object([("String", .string(s))])
        case .regex(let r, _, _): return .object([("Regex", .string(r))])
        }
    }
}

extension PreTokenizer {
    var json: JSONValue {
        switch self {
        case let .byteLevel(addPrefixSpace, trimOffsets, useRegex):
            return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                            ("trim_offsets", .bool(trimOffsets)), ("use_regex", .bool(useRegex))])
        case let .split(pattern, behavior, invert):
            return .object([("type", .string("Split")), ("pattern", pattern.json), ("behavior", .string(behavior.rawValue)),
                            ("invert", .bool(invert))])
        case .digits(let individual):
            return .object([("type", .string("Digits")), ("individual_digits", .bool(individual))])
        case let .metaspace(replacement, scheme, split):
            return .object([("type", .string("Metaspace")), ("replacement", .string(replacement)),
                            ("prepend_scheme", .string(scheme)), ("split", .bool(split))])
        case .whitespaceSplit:
            return .object([("type", .string("WhitespaceSplit"))])
        case .sequence(let steps):
            return .object([("type", .string("Sequence")), ("pretokenizers", .array(steps.map(\.json)))])
        }
    }
}

extension Normalizer {
    var json: JSONValue {
        switch self {
        case .nfc: return .object([("type", .string("NFC"))])
        case .nfd: return .object([("type", .string("NFD"))])
        case .nfkc: return .object([("type", .string("NFKC"))])
        case .nfkd: return .object([("type", .string("NFKD"))])
        case .lowercase: return .object([("type", .string("Lowercase"))])
        case let .replace(p, content):
            return .object([("type", .string("Replace")), ("pattern", p.json), ("content", .string(content))])
        case .prepend(let s): return .object([("type", .string("Prepend")), ("prepend", .string(s))])
        case let .strip(l, r):
            return .object([("type", .string("Strip")), ("strip_left", .bool(l)), ("strip_right", .bool(r))])
        case .sequence(let steps):
            return .object([("type", .string("Sequence")), ("normalizers", .array(steps.map(\.json)))])
        case .precompiled(let map):
            return .object([("type", .string("Precompiled")),
                            ("precompiled_charsmap", .string(Data(map.blob).base64EncodedString()))])
        }
    }
}

extension TokenDecoder {
    var json: JSONValue {
        switch self {
        case .byteLevel:
            return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)), ("trim_offsets", .bool(true)),
                            ("use_regex", .bool(true))])
        case let .replace(p, c):
            return .object([("type", .string("Replace")), ("pattern", .object([("String", .string(p))])), ("content", .string(c))])
        case .byteFallback: return .object([("type", .string("ByteFallback"))])
        case .fuse: return .object([("type", .string("Fuse"))])
        case let .strip(c, start, stop):
            return .object([("type", .string("Strip")), ("content", .string(String(Character(c)))),
                            ("start", .number(String(start))), ("stop", .number(String(stop)))])
        case let .metaspace(r, scheme):
            return .object([("type", .string("Metaspace")), ("replacement", .string(String(Character(r)))),
                            ("prepend_scheme", .string(scheme)), ("split", .bool(true))])
        case .sequence(let steps):
            return .object([("type", .string("Sequence")), ("decoders", .array(steps.map(\.json)))])
        }
    }
}

extension PostProcessor {
    var json: JSONValue {
        switch self {
        case let .template(single, pair, specials):
            func pieces(_ p: [Piece]) -> JSONValue {
                .array(p.map { piece in
                    switch piece {
                    case let .special(name, typeId):
                        return .object([("SpecialToken", .object([("id", .string(name)), ("type_id", .number(String(typeId)))]))])
                    case let .sequence(name, typeId):
                        return .object([("Sequence", .object([("id", .string(name)), ("type_id", .number(String(typeId)))]))])
                    }
                })
            }
            return .object([
                ("type", .string("TemplateProcessing")),
                ("single", pieces(single)),
                ("pair", pieces(pair)),
                ("special_tokens", .object(specials.map { s in
                    (s.name, .object([("id", .string(s.name)), ("ids", .array(s.ids.map { .number(String($0)) })),
                                      ("tokens", .array(s.tokens.map { .string($0) }))]))
                })),
            ])
        case .clsSep(_, _, _, let json), .byteLevel(let json):
            return json
        case .sequence(let steps):
            return .object([("type", .string("Sequence")), ("processors", .array(steps.map(\.json)))])
        }
    }
}
