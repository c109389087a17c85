import FinchFormats
import Foundation

extension Tokenizer {
    /// Loads a Hugging Face `tokenizer.json` (model type BPE) and, optionally, the
    /// `tokenizer_config.json` next to it (special tokens, `add_bos_token`, `chat_template`).
    ///
    /// - Parameters:
    ///   - path: the tokenizer.json file.
    ///   - configAt: the tokenizer_config.json file; nil to skip it.
    /// - Throws: `TokenizerError` naming the file and field that is wrong or unsupported.
    public convenience init(tokenizerJSONAt path: String, configAt configPath: String? = nil) throws {
        let json = try Tokenizer.readJSON(path)
        var config: JSONValue? = nil
        if let configPath { config = try Tokenizer.readJSON(configPath) }
        var templateFromFile: String? = nil
        if let configPath {
            // Newer transformers save the template next to the config as chat_template.jinja.
            let jinja = URL(fileURLWithPath: configPath).deletingLastPathComponent()
                .appendingPathComponent("chat_template.jinja").path
            if let data = FileManager.default.contents(atPath: jinja) {
                templateFromFile = String(decoding: data, as: UTF8.self)
            }
        }
        try self.init(tokenizerJSON: json, config: config, source: path, chatTemplateFile: templateFromFile)
    }

    static func readJSON(_ path: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.io(path: path, reason: "file not found or unreadable")
        }
        do {
            return try JSONParser.parse([UInt8](data), options: .lenient)
        } catch {
            throw TokenizerError.invalidJSON(path: path, offset: error.offset, reason: error.message)
        }
    }

    convenience init(tokenizerJSON json: JSONValue, config: JSONValue?, source: String, chatTemplateFile: String? = nil) throws {
        guard let modelJSON = json["model"] else { throw TokenizerError.missingField(field: "model", source: source) }
        let modelType = modelJSON["type"]?.stringValue ?? (modelJSON["merges"] != nil ? "BPE" : "unknown")
        guard modelType == "BPE" || modelType == "Unigram" else {
            throw TokenizerError.unsupported(model: modelType, reason: "only BPE and Unigram models are implemented (in \(source))")
        }
        let preTokenizer = try json["pre_tokenizer"].flatMap { try PreTokenizer(json: $0, source: source) }
        let normalizer = try json["normalizer"].flatMap { try Normalizer(json: $0, source: source) }
        let decoder = try json["decoder"].flatMap { try TokenDecoder(json: $0, source: source) }
        let post = try json["post_processor"].flatMap { try PostProcessor(json: $0, source: source) }
        let model: any TokenModel = modelType == "Unigram"
            ? try Tokenizer.unigramModel(modelJSON, source: source)
            : try Tokenizer.bpeModel(modelJSON, byteLevel: preTokenizer?.isByteLevel ?? false, source: source)
        try self.init(model: model, json: json, config: config, normalizer: normalizer, preTokenizer: preTokenizer,
                      decoder: decoder, post: post, source: source, chatTemplateFile: chatTemplateFile)
    }

    /// A Unigram model: `vocab` is a list of [piece, score] in id order, `unk_id`, `byte_fallback`.
    static func unigramModel(_ modelJSON: JSONValue, source: String) throws -> UnigramModel {
        guard let list = modelJSON["vocab"]?.arrayValue else {
            throw TokenizerError.missingField(field: "model.vocab", source: source)
        }
        var pieces: [(String, Double)] = []
        pieces.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard let pair = item.arrayValue, pair.count == 2, let piece = pair[0].stringValue, let score = pair[1].doubleValue else {
                throw TokenizerError.invalidField(field: "model.vocab[\(i)]", source: source, reason: "expected [piece, score]")
            }
            pieces.append((piece, score))
        }
        return try UnigramModel(pieces: pieces, unkId: modelJSON["unk_id"]?.wholeNumberValue,
                                byteFallback: modelJSON["byte_fallback"]?.boolValue ?? false, source: source)
    }

    /// Ids a tokenizer file may give: below 2^24 (real vocabularies stay under 2^20), so that the
    /// id tables Finch builds stay small whatever a file claims.
    static let tokenIdLimit = 1 << 24

    /// A token id read from a tokenizer file: a whole number in 0..<tokenIdLimit.
    static func tokenId(_ v: JSONValue, field: String, source: String) throws -> Int {
        guard let id = v.wholeNumberValue else {
            throw TokenizerError.invalidField(field: field, source: source, reason: "not an integer id: \(v)")
        }
        guard id >= 0 && id < tokenIdLimit else {
            throw TokenizerError.invalidField(field: field, source: source, reason: "id \(id) is outside 0..<\(tokenIdLimit)")
        }
        return id
    }

    static func bpeModel(_ modelJSON: JSONValue, byteLevel: Bool, source: String) throws -> BPEModel {

        guard let vocabJSON = modelJSON["vocab"]?.objectValue else {
            throw TokenizerError.missingField(field: "model.vocab", source: source)
        }
        var vocab: [TokenText: Int32] = [:]
        vocab.reserveCapacity(vocabJSON.count)
        for (k, v) in vocabJSON {
            vocab[TokenText(k)] = Int32(try tokenId(v, field: "model.vocab[\"\(k)\"]", source: source))
        }
        var merges: [(String, String)] = []
        if let m = modelJSON["merges"]?.arrayValue {
            merges.reserveCapacity(m.count)
            for (i, item) in m.enumerated() {
                switch item {
                case .string(let s):
                    let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                    guard parts.count == 2 else {
                        throw TokenizerError.invalidMerge(index: i, merge: s, reason: "expected two tokens separated by one space")
                    }
                    merges.append((String(parts[0]), String(parts[1])))
                case .array(let pair):
                    guard pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else {
                        throw TokenizerError.invalidMerge(index: i, merge: "\(pair)", reason: "expected a pair of strings")
                    }
                    merges.append((a, b))
                default:
                    throw TokenizerError.invalidMerge(index: i, merge: "\(item)", reason: "expected a string or a pair")
                }
            }
        }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = modelJSON[field]?.stringValue, !s.isEmpty {
                throw TokenizerError.unsupported(model: "BPE", reason: "model.\(field) \"\(s)\" is not implemented (in \(source))")
            }
        }
        if let d = modelJSON["dropout"]?.doubleValue, d > 0 {
            throw TokenizerError.unsupported(model: "BPE", reason: "BPE dropout \(d) is not implemented (in \(source))")
        }
        return try BPEModel(vocab: vocab, merges: merges, byteLevel: byteLevel,
                            unkToken: modelJSON["unk_token"]?.stringValue,
                            fuseUnk: modelJSON["fuse_unk"]?.boolValue ?? false,
                            byteFallback: modelJSON["byte_fallback"]?.boolValue ?? false,
                            ignoreMerges: modelJSON["ignore_merges"]?.boolValue ?? false)
    }

    private convenience init(model: any TokenModel, json: JSONValue, config: JSONValue?, normalizer: Normalizer?,
                             preTokenizer: PreTokenizer?, decoder: TokenDecoder?, post: PostProcessor?, source: String,
                             chatTemplateFile: String?) throws {

        var added: [AddedToken] = []
        for (i, t) in (json["added_tokens"]?.arrayValue ?? []).enumerated() {
            guard let idJSON = t["id"], let content = t["content"]?.stringValue else {
                throw TokenizerError.invalidField(field: "added_tokens[\(i)]", source: source, reason: "needs `id` and `content`")
            }
            let id = try Self.tokenId(idJSON, field: "added_tokens[\(i)].id", source: source)
            let special = t["special"]?.boolValue ?? false
            added.append(AddedToken(id: id, content: content, special: special,
                                    lstrip: t["lstrip"]?.boolValue ?? false, rstrip: t["rstrip"]?.boolValue ?? false,
                                    singleWord: t["single_word"]?.boolValue ?? false,
                                    normalized: t["normalized"]?.boolValue ?? !special))
        }

        var settings = TokenizerSettings()
        if let config {
            func tokenString(_ key: String) -> String? {
                guard let v = config[key] else { return nil }
                if let s = v.stringValue { return s }
                return v["content"]?.stringValue  // {"__type": "AddedToken", "content": ...}
            }
            settings.bosToken = tokenString("bos_token")
            settings.eosToken = tokenString("eos_token")
            settings.padToken = tokenString("pad_token")
            settings.unkToken = tokenString("unk_token")
            // `add_bos_token` / `add_eos_token` are ignored: with a tokenizer.json, transformers (5.x)
            // drops them and the post-processor alone decides what `add_special_tokens` adds.
            settings.modelMaxLength = config["model_max_length"]?.wholeNumberValue
            switch config["chat_template"] {
            case .string(let s)?:
                settings.chatTemplate = s
            case .array(let list)?:
                // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
                let named = list.first { $0["name"]?.stringValue == "default" } ?? list.first
                settings.chatTemplate = named?["template"]?.stringValue
            default:
                break
            }
            // Tokens declared only in the config's added_tokens_decoder.
            if let decl = config["added_tokens_decoder"]?.objectValue {
                for (key, t) in decl {
                    guard let id = Int(key), let content = t["content"]?.stringValue,
                          !added.contains(where: { $0.id == id }) else { continue }
                    let special = t["special"]?.boolValue ?? false
                    added.append(AddedToken(id: id, content: content, special: special,
                                            lstrip: t["lstrip"]?.boolValue ?? false, rstrip: t["rstrip"]?.boolValue ?? false,
                                            singleWord: t["single_word"]?.boolValue ?? false,
                                            normalized: t["normalized"]?.boolValue ?? !special))
                }
            }
        }
        if settings.chatTemplate == nil { settings.chatTemplate = chatTemplateFile }
        self.init(model: model, addedTokens: added, normalizer: normalizer, preTokenizer: preTokenizer,
                  decoder: decoder, postProcessor: post, settings: settings)
    }
}

// MARK: - Component specs

extension PreTokenizer {
    init?(json: JSONValue, source: String) throws {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(field: "pre_tokenizer", source: source, reason: "no `type`")
        }
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true,
                              trimOffsets: json["trim_offsets"]?.boolValue ?? true,
                              useRegex: json["use_regex"]?.boolValue ?? true)
        case "Split":
            let pattern = try SplitPattern(json: json["pattern"], field: "pre_tokenizer.pattern", source: source)
            let behaviorName = json["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw TokenizerError.invalidField(field: "pre_tokenizer.behavior", source: source,
                                                  reason: "unknown behavior \"\(behaviorName)\"")
            }
            self = .split(pattern, behavior: behavior, invert: json["invert"]?.boolValue ?? false)
        case "Digits":
            self = .digits(individualDigits: json["individual_digits"]?.boolValue ?? false)
        case "Metaspace":
            let rep = json["replacement"]?.stringValue ?? "\u{2581}"
            var scheme = json["prepend_scheme"]?.stringValue ?? "always"
            if let add = json["add_prefix_space"]?.boolValue, json["prepend_scheme"] == nil { scheme = add ? "always" : "never" }
            self = .metaspace(replacement: rep, prependScheme: scheme, split: json["split"]?.boolValue ?? true)
        case "WhitespaceSplit":
            self = .whitespaceSplit
        case "Sequence":
            var steps: [PreTokenizer] = []
            for item in json["pretokenizers"]?.arrayValue ?? [] {
                if let p = try PreTokenizer(json: item, source: source) { steps.append(p) }
            }
            if let i = steps.firstIndex(where: { $0.isByteLevel }), i != steps.count - 1 {
                throw TokenizerError.unsupportedComponent(kind: "pre-tokenizer", type: "Sequence with ByteLevel before other steps",
                                                          source: source)
            }
            self = .sequence(steps)
        default:
            throw TokenizerError.unsupportedComponent(kind: "pre-tokenizer", type: type, source: source)
        }
    }
}

extension SplitPattern {
    init(json: JSONValue?, field: String, source: String) throws {
        if let s = json?["String"]?.stringValue {
            self = .string(s)
        } else if let r = json?["Regex"]?.stringValue {
            self = try .regex(r)
        } else {
            throw TokenizerError.invalidField(field: field, source: source, reason: "expected {\"String\": ...} or {\"Regex\": ...}")
        }
    }

    /// A regex that is always run by `NSRegularExpression` (for `Replace`).
    static func regexMatcher(_ pattern: String) throws -> SplitPattern {
        .regex(pattern, scanner: nil, matcher: try RegexMatcher(pattern: pattern))
    }
}

extension Normalizer {
    init?(json: JSONValue, source: String) throws {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(field: "normalizer", source: source, reason: "no `type`")
        }
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Prepend": self = .prepend(json["prepend"]?.stringValue ?? "")
        case "Strip": self = .strip(left: json["strip_left"]?.boolValue ?? true, right: json["strip_right"]?.boolValue ?? true)
        case "Replace":
            let content = json["content"]?.stringValue ?? ""
            if let r = json["pattern"]?["Regex"]?.stringValue {
                self = .replace(try SplitPattern.regexMatcher(r), content: content)
            } else {
                self = .replace(try SplitPattern(json: json["pattern"], field: "normalizer.pattern", source: source), content: content)
            }
        case "Precompiled":
            guard let b64 = json["precompiled_charsmap"]?.stringValue else {
                throw TokenizerError.missingField(field: "normalizer.precompiled_charsmap", source: source)
            }
            // An empty charsmap (SentencePiece models without normalization rules) changes nothing.
            self = b64.isEmpty ? .sequence([]) : .precompiled(try PrecompiledCharsmap(base64: b64, source: source))
        case "Sequence":
            var steps: [Normalizer] = []
            for item in json["normalizers"]?.arrayValue ?? [] {
                if let n = try Normalizer(json: item, source: source) { steps.append(n) }
            }
            self = .sequence(steps)
        default:
            throw TokenizerError.unsupportedComponent(kind: "normalizer", type: type, source: source)
        }
    }
}

extension TokenDecoder {
    init?(json: JSONValue, source: String) throws {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(field: "decoder", source: source, reason: "no `type`")
        }
        switch type {
        case "ByteLevel": self = .byteLevel
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Replace":
            guard let p = json["pattern"]?["String"]?.stringValue else {
                throw TokenizerError.unsupportedComponent(kind: "decoder", type: "Replace with a regex pattern", source: source)
            }
            self = .replace(pattern: p, content: json["content"]?.stringValue ?? "")
        case "Strip":
            let c = json["content"]?.stringValue?.unicodeScalars.first ?? " "
            func count(_ key: String) throws -> Int {
                guard let v = json[key], !v.isNull else { return 0 }
                guard let n = v.wholeNumberValue, n >= 0 else {
                    throw TokenizerError.invalidField(field: "decoder.\(key)", source: source, reason: "expected a count ≥ 0, got \(v)")
                }
                return n
            }
            self = .strip(content: c, start: try count("start"), stop: try count("stop"))
        case "Metaspace":
            let rep = json["replacement"]?.stringValue?.unicodeScalars.first ?? "\u{2581}"
            var scheme = json["prepend_scheme"]?.stringValue ?? "always"
            if let add = json["add_prefix_space"]?.boolValue, json["prepend_scheme"] == nil { scheme = add ? "always" : "never" }
            self = .metaspace(replacement: rep, prependScheme: scheme)
        case "Sequence":
            var steps: [TokenDecoder] = []
            for item in json["decoders"]?.arrayValue ?? [] {
                if let d = try TokenDecoder(json: item, source: source) { steps.append(d) }
            }
            self = .sequence(steps)
        default:
            throw TokenizerError.unsupportedComponent(kind: "decoder", type: type, source: source)
        }
    }

    var isByteLevelAnywhere: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let s): return s.contains { $0.isByteLevelAnywhere }
        default: return false
        }
    }
}

extension PostProcessor {
    init?(json: JSONValue, source: String) throws {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(field: "post_processor", source: source, reason: "no `type`")
        }
        switch type {
        case "TemplateProcessing":
            func pieces(_ j: JSONValue?, _ name: String) throws -> [Piece] {
                try (j?.arrayValue ?? []).map { item in
                    if let s = item["SpecialToken"] {
                        return .special(s["id"]?.stringValue ?? "", typeId: s["type_id"]?.wholeNumberValue ?? 0)
                    }
                    if let s = item["Sequence"] {
                        return .sequence(s["id"]?.stringValue ?? "A", typeId: s["type_id"]?.wholeNumberValue ?? 0)
                    }
                    throw TokenizerError.invalidField(field: "post_processor.\(name)", source: source,
                                                      reason: "expected SpecialToken or Sequence items")
                }
            }
            var specials: [(name: String, ids: [Int], tokens: [String])] = []
            for (name, spec) in json["special_tokens"]?.objectValue ?? [] {
                let ids = try (spec["ids"]?.arrayValue ?? []).enumerated().map { i, v in
                    try Tokenizer.tokenId(v, field: "post_processor.special_tokens[\"\(name)\"].ids[\(i)]", source: source)
                }
                specials.append((name, ids, (spec["tokens"]?.arrayValue ?? []).compactMap(\.stringValue)))
            }
            self = .template(single: try pieces(json["single"], "single"), pair: try pieces(json["pair"], "pair"),
                             specialTokens: specials)
        case "RobertaProcessing", "BertProcessing":
            func pair(_ key: String) throws -> (String, Int) {
                guard let a = json[key]?.arrayValue, a.count == 2, let s = a[0].stringValue else {
                    throw TokenizerError.invalidField(field: "post_processor.\(key)", source: source, reason: "expected [token, id]")
                }
                return (s, try Tokenizer.tokenId(a[1], field: "post_processor.\(key)[1]", source: source))
            }
            self = .clsSep(kind: type, cls: try pair("cls"), sep: try pair("sep"), json: json)
        case "ByteLevel":
            self = .byteLevel(json: json)
        case "Sequence":
            var steps: [PostProcessor] = []
            for item in json["processors"]?.arrayValue ?? [] {
                if let p = try PostProcessor(json: item, source: source) { steps.append(p) }
            }
            self = .sequence(steps)
        default:
            throw TokenizerError.unsupportedComponent(kind: "post-processor", type: type, source: source)
        }
    }
}
