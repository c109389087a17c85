import FinchCore
import FinchFormats
import FinchModels
import FinchTokenizer

/// How a preference sequence longer than `max_length` is cut (TRL's `truncation_mode`).
public enum TruncationMode: String, SettingChoice, Sendable {
    /// Keep the first `max_length` tokens (TRL's default); a pair whose prompt alone fills it is dropped.
    case keepStart = "keep_start"
    /// Keep the last `max_length` tokens.
    case keepEnd = "keep_end"
}

/// How preference records become tokens: as TRL 1.16's `DPOTrainer` does, or as its `CPOTrainer`
/// and `ORPOTrainer` do (the older pipeline, kept by those trainers).
public enum PreferenceTokenization: Sendable, Equatable {
    /// `DPOTrainer._prepare_dataset`: prompt and prompt + answer tokenized with the tokenizer's special
    /// tokens (conversations through the chat template), the answer where they part.
    case dpo
    /// `CPOTrainer.tokenize_row`: conversations rendered to text first (`maybe_apply_chat_template`:
    /// the prompt is the text prompt + answer share), prompt and prompt + answer tokenized without
    /// special tokens, the answer where they part (one token earlier when the prompt's last token
    /// merged), BOS put before each prompt and EOS after each answer when missing; the chosen and
    /// rejected prompts may then differ in their last token.
    case legacy
    /// `CPOTrainer` / `ORPOTrainer` on an encoder-decoder model: conversations rendered to text as for
    /// `legacy`, the prompt tokenized with the tokenizer's special tokens (T5: EOS at the end) as the
    /// encoder's input, each answer likewise as the decoder's labels, cut to `maxCompletionLength`
    /// tokens (EOS kept), after the decoder start token `start`.
    case encoderDecoder(start: Int32, maxCompletionLength: Int)

    /// The tokenization of a method's trainer in TRL.
    public init(method: TrainingMethod) { self = method == .simpo || method == .orpo ? .legacy : .dpo }
}

/// One preference record tokenized as TRL's trainer for the method tokenizes it: the prompt, and the
/// tokens by which prompt + chosen and prompt + rejected continue it.
public struct PreferencePair: Sendable, Equatable {
    public var prompt: [Int32]
    public var chosen: [Int32]
    public var rejected: [Int32]
    /// The rejected answer's prompt when it differs from the chosen one's (`.legacy` tokenization,
    /// a token merged across the boundary); nil when it is `prompt`.
    public var rejectedPrompt: [Int32]?
    /// An encoder-decoder pair's decoder start token: `prompt` is then the encoder's input and each
    /// answer the decoder's labels (nil: a decoder-only pair, prompt + answer in one sequence).
    public var decoderStart: Int32?
    /// The reference model's log-probabilities of the two answers, when computed before training
    /// (`precompute_ref_log_probs`).
    public var referenceChosen: Double?
    public var referenceRejected: Double?

    public init(prompt: [Int32], chosen: [Int32], rejected: [Int32], rejectedPrompt: [Int32]? = nil) {
        self.prompt = prompt; self.chosen = chosen; self.rejected = rejected; self.rejectedPrompt = rejectedPrompt
    }

    /// The longer of the two prompts.
    var longestPrompt: Int { max(prompt.count, rejectedPrompt?.count ?? 0) }

    /// One answer as the model sees it (TRL's `DataCollatorForPreference`): prompt + completion,
    /// labels on the completion only (on every token with `labelPrompt`, ORPO's chosen sequences),
    /// cut to `maxLength` per `truncation`; and how many completion tokens it kept.
    public static func sequence(prompt: [Int32], completion: [Int32], maxLength: Int?, truncation: TruncationMode,
                                labelPrompt: Bool = false) -> (sequence: TrainingSequence, completionTokens: Int) {
        var tokens = prompt + completion
        var labels = (labelPrompt ? prompt : [Int32](repeating: CrossEntropy.ignoreIndex, count: prompt.count)) + completion
        var kept = completion.count
        if let maxLength, tokens.count > maxLength {
            switch truncation {
            case .keepStart:
                tokens.removeLast(tokens.count - maxLength); labels.removeLast(labels.count - maxLength)
                kept = max(0, maxLength - prompt.count)
            case .keepEnd:
                tokens.removeFirst(tokens.count - maxLength); labels.removeFirst(labels.count - maxLength)
                kept = min(completion.count, maxLength)
            }
        }
        return (TrainingSequence(tokens: tokens, labels: labels), kept)
    }

    /// Both answers as sequences (see `sequence`); an encoder-decoder pair's as (prompt → answer)
    /// sequences, the answers already cut at loading (`maxLength` and `truncation` do not apply).
    public func sequences(maxLength: Int?, truncation: TruncationMode, labelChosenPrompt: Bool = false)
        -> (chosen: TrainingSequence, rejected: TrainingSequence, chosenTokens: Int, rejectedTokens: Int) {
        if let start = decoderStart {
            func seq(_ answer: [Int32]) -> TrainingSequence {
                TrainingSequence(tokens: [start] + answer, labels: [CrossEntropy.ignoreIndex] + answer, source: prompt)
            }
            return (seq(chosen), seq(rejected), chosen.count, rejected.count)
        }
        let c = Self.sequence(prompt: prompt, completion: chosen, maxLength: maxLength, truncation: truncation, labelPrompt: labelChosenPrompt)
        let r = Self.sequence(prompt: rejectedPrompt ?? prompt, completion: rejected, maxLength: maxLength, truncation: truncation)
        return (c.sequence, r.sequence, c.completionTokens, r.completionTokens)
    }
}

/// A preference file as read: its pairs and what became of its records.
public struct LoadedPreferences: Sendable {
    public var pairs: [PreferencePair] = []
    /// KTO's examples (`loadUnpaired`; `pairs` is then empty).
    public var unpaired: [UnpairedExample] = []
    public var recordCount = 0
    /// Records left out because their prompt alone fills `max_length` (keep_start).
    public var droppedCount = 0
    /// Pairs of which an answer is cut by `max_length`.
    public var truncatedCount = 0
    /// Whether the records are conversations (message lists through the chat template).
    public var conversational = false
}

/// Reads TRL's preference formats from a JSON / JSON-lines file:
/// - standard: `{"prompt": text, "chosen": text, "rejected": text}` (EOS text appended to each
///   answer that lacks it; the tokenizer's special tokens, e.g. BOS, added as `tokenizer(text)` adds them);
/// - conversational: the same keys holding message lists (`[{"role", "content"}]`), rendered by
///   the chat template (the prompt with the generation prompt, prompt + answer without);
/// - implicit prompt: only `chosen` and `rejected`, whole conversations (or texts) whose shared
///   start is the prompt (TRL's `extract_prompt`).
/// The answer's tokens start where the tokenized prompt and prompt + answer part (TRL's
/// `common_prefix_length`). A record whose chosen equals its rejected, or that lacks a key, is an
/// error naming its line.
public enum PreferenceData {
    public static func load(path: String, tokenizer: Tokenizer, maxLength: Int?, truncation: TruncationMode,
                            tokenization: PreferenceTokenization = .dpo) throws -> LoadedPreferences {
        let records = try DataFileReader.records(path: path)
        var out = LoadedPreferences()
        out.recordCount = records.count
        for (i, record) in records.enumerated() {
            let pair = try self.pair(record, path: path, tokenizer: tokenizer, tokenization: tokenization,
                                     conversational: &out.conversational, first: i == 0)
            if pair.decoderStart == nil {
                if let maxLength, truncation == .keepStart, pair.longestPrompt >= maxLength { out.droppedCount += 1; continue }
                if let maxLength, pair.longestPrompt + max(pair.chosen.count, pair.rejected.count) > maxLength { out.truncatedCount += 1 }
            }
            out.pairs.append(pair)
        }
        if out.pairs.isEmpty { throw DataError.emptyDataset(path: path, dropped: out.droppedCount) }
        return out
    }

    /// A preference file read as `method` of `config` reads it: KTO's unpaired examples (their KL
    /// completions not yet assigned), or pairs tokenized as the method's TRL trainer does (for an
    /// encoder-decoder model, whose decoder starts with `decoderStart`, as `CPOTrainer` / `ORPOTrainer` do).
    /// `model` names the model in errors: DPO and KTO refuse an encoder-decoder model (TRL's trainers
    /// have no such path), and `max_completion_length` is refused for a decoder-only one.
    public static func load(path: String, config c: TrainingConfig, tokenizer: Tokenizer, decoderStart: Int32?, model: String) throws
        -> (file: LoadedPreferences, examples: PreferenceExamples) {
        if decoderStart != nil && c.method != .simpo && c.method != .orpo {
            throw SettingError.invalid(key: "method", reason: "\(c.method.rawValue) trains decoder-only models (TRL 1.16's \(c.method == .kto ? "KTOTrainer" : "DPOTrainer") has no encoder-decoder path); \(model) is an encoder-decoder model: simpo and orpo train it")
        }
        if decoderStart == nil && c.maxCompletionLength != nil {
            throw SettingError.invalid(key: "max_completion_length", reason: "max_completion_length applies to encoder-decoder models; \(model) is decoder-only: max_length cuts prompt + answer")
        }
        if c.method == .kto {
            let file = try loadUnpaired(path: path, tokenizer: tokenizer, maxLength: c.maxLength)
            return (file, .unpaired(file.unpaired))
        }
        let tokenization = decoderStart.map { .encoderDecoder(start: $0, maxCompletionLength: c.maxCompletionLength ?? 128) }
            ?? PreferenceTokenization(method: c.method)
        let file = try load(path: path, tokenizer: tokenizer, maxLength: c.maxLength, truncation: c.truncationMode, tokenization: tokenization)
        return (file, .pairs(file.pairs))
    }

    /// A record's value under `key`: text or a message list.
    enum Part { case text(String), messages([ChatMessage]) }

    static func part(_ record: DataRecord, _ key: String, path: String) throws -> Part {
        guard let v = record.value[key] else {
            throw record.malformed(path, "missing key \"\(key)\"; a preference record needs \"chosen\" and \"rejected\" "
                + "(and \"prompt\" unless they are whole conversations sharing it) (keys here: \(record.keys.joined(separator: ", ")))")
        }
        if let s = v.stringValue { return .text(s) }
        if v.arrayValue != nil {
            let conversation = try ChatConversation(record: DataRecord(value: .object([("messages", v)]), line: record.line,
                                                                       arrayIndex: record.arrayIndex), path: path)
            return .messages(conversation.messages)
        }
        throw record.malformed(path, "key \"\(key)\" is \(v.kindName); it must be text or a list of messages")
    }

    /// A paired record's prompt and answers (the prompt extracted when implicit), all text or all
    /// message lists, in the file's one format.
    static func pairParts(_ record: DataRecord, path: String, conversational: inout Bool, first: Bool) throws
        -> (prompt: Part, chosen: Part, rejected: Part) {
        guard record.value.objectValue != nil else { throw record.malformed(path, "a preference record must be an object") }
        var chosen = try part(record, "chosen", path: path), rejected = try part(record, "rejected", path: path)
        var prompt: Part
        if record.value["prompt"] != nil {
            prompt = try part(record, "prompt", path: path)
        } else {
            (prompt, chosen, rejected) = try extractPrompt(chosen, rejected, record: record, path: path)
        }
        try checkFormat([prompt, chosen, rejected], keys: "\"prompt\", \"chosen\" and \"rejected\"", record: record, path: path,
                        conversational: &conversational, first: first)
        return (prompt, chosen, rejected)
    }

    /// Checks that `parts` are all text or all message lists, and of the format of the file's first record.
    static func checkFormat(_ parts: [Part], keys: String, record: DataRecord, path: String, conversational: inout Bool, first: Bool) throws {
        let texts = parts.filter { if case .text = $0 { return true } else { return false } }.count
        guard texts == 0 || texts == parts.count else { throw record.malformed(path, "\(keys) must all be text or all be message lists") }
        let isConversation = texts == 0
        if first { conversational = isConversation } else if isConversation != conversational {
            throw record.malformed(path, "this record is \(isConversation ? "a conversation" : "text") but the first was \(conversational ? "a conversation" : "text"); use one format per file")
        }
    }

    /// An answer tokenized as TRL 1.16's DPO and KTO trainers tokenize it: the prompt alone and the
    /// prompt followed by the answer (text: with the tokenizer's special tokens, EOS text appended to
    /// an answer that lacks it; messages: through the chat template, the prompt with the generation prompt).
    static func tokenize(prompt: Part, answer: Part, record: DataRecord, path: String, tokenizer: Tokenizer) throws
        -> (prompt: [Int32], full: [Int32]) {
        switch (prompt, answer) {
        case let (.text(p), .text(a)):
            guard let eos = tokenizer.eosToken else {
                throw DataError.invalidOptions(reason: "the tokenizer has no EOS token to end the answers of \(path) with")
            }
            return (tokenizer.encode32(p, addSpecialTokens: true), tokenizer.encode32(p + (a.hasSuffix(eos) ? a : a + eos), addSpecialTokens: true))
        case let (.messages(p), .messages(a)):
            guard tokenizer.chatTemplate != nil else { throw DataError.noChatTemplate(path: path) }
            func render(_ m: [ChatMessage], _ generationPrompt: Bool) throws -> [Int32] {
                do { return tokenizer.encode32(try tokenizer.applyChatTemplate(m, addGenerationPrompt: generationPrompt)) } catch {
                    throw DataError.chatTemplate(path: path, line: record.line, reason: record.place + "\(error)")
                }
            }
            return (try render(p, true), try render(p + a, false))
        default: fatalError("checked by checkFormat")
        }
    }

    static func pair(_ record: DataRecord, path: String, tokenizer: Tokenizer, tokenization: PreferenceTokenization,
                     conversational: inout Bool, first: Bool) throws -> PreferencePair {
        let (prompt, chosen, rejected) = try pairParts(record, path: path, conversational: &conversational, first: first)
        if tokenization == .legacy {
            return try legacyPair(prompt, chosen, rejected, record: record, path: path, tokenizer: tokenizer)
        }
        if case let .encoderDecoder(start, most) = tokenization {
            return try encoderDecoderPair(prompt, chosen, rejected, start: start, maxCompletionLength: most, record: record, path: path,
                                          tokenizer: tokenizer)
        }
        switch (chosen, rejected) {
        case let (.text(c), .text(r)) where c == r:
            throw record.malformed(path, "\"chosen\" equals \"rejected\"; a preference pair needs two different answers")
        case let (.messages(c), .messages(r)) where c == r:
            throw record.malformed(path, "\"chosen\" equals \"rejected\"; a preference pair needs two different answers")
        default: break
        }
        let c = try tokenize(prompt: prompt, answer: chosen, record: record, path: path, tokenizer: tokenizer)
        let r = try tokenize(prompt: prompt, answer: rejected, record: record, path: path, tokenizer: tokenizer)
        let start = min(commonPrefix(c.prompt, c.full), commonPrefix(c.prompt, r.full))
        let pair = PreferencePair(prompt: Array(c.prompt.prefix(start)), chosen: Array(c.full.dropFirst(start)),
                                  rejected: Array(r.full.dropFirst(start)))
        if pair.chosen == pair.rejected {
            throw record.malformed(path, "\"chosen\" and \"rejected\" give the same tokens; a preference pair needs two different answers")
        }
        if pair.chosen.isEmpty || pair.rejected.isEmpty {
            throw record.malformed(path, "an answer has no tokens after the prompt; give each of \"chosen\" and \"rejected\" some text")
        }
        return pair
    }

    /// `CPOTrainer`'s encoder-decoder pipeline (see `PreferenceTokenization.encoderDecoder`).
    static func encoderDecoderPair(_ prompt: Part, _ chosen: Part, _ rejected: Part, start: Int32, maxCompletionLength: Int,
                                   record: DataRecord, path: String, tokenizer: Tokenizer) throws -> PreferencePair {
        let (p, c, r) = try legacyTexts(prompt, chosen, rejected, record: record, path: path, tokenizer: tokenizer)
        if c == r { throw record.malformed(path, "\"chosen\" equals \"rejected\"; a preference pair needs two different answers") }
        guard let eos = tokenizer.eosTokenId.map(Int32.init) else {
            throw DataError.invalidOptions(reason: "the tokenizer has no EOS token to end the prompts and answers of \(path) with")
        }
        func answer(_ text: String) throws -> [Int32] {
            let ids = Array(tokenizer.encode32(text).prefix(max(0, maxCompletionLength - 1))) + [eos]
            if ids.count < 2 { throw record.malformed(path, "an answer has no tokens; give each of \"chosen\" and \"rejected\" some text") }
            return ids
        }
        var pair = PreferencePair(prompt: tokenizer.encode32(p) + [eos], chosen: try answer(c), rejected: try answer(r))
        pair.decoderStart = start
        return pair
    }

    /// A record's prompt and answers as text, as `maybe_apply_chat_template` makes them (conversations
    /// rendered by the chat template; the prompt is what the rendered prompt and prompt + answer share).
    static func legacyTexts(_ prompt: Part, _ chosen: Part, _ rejected: Part, record: DataRecord, path: String,
                            tokenizer: Tokenizer) throws -> (String, String, String) {
        let p: String, c: String, r: String
        switch (prompt, chosen, rejected) {
        case let (.text(pt), .text(ct), .text(rt)):
            (p, c, r) = (pt, ct, rt)
        case let (.messages(pm), .messages(cm), .messages(rm)):
            guard tokenizer.chatTemplate != nil else { throw DataError.noChatTemplate(path: path) }
            guard pm.last?.role == "user" else {
                throw record.malformed(path, "the prompt's last message is \(pm.last.map { "from \"\($0.role)\"" } ?? "missing"); simpo (TRL's CPOTrainer) needs a prompt ending with a user message")
            }
            func render(_ m: [ChatMessage], _ generationPrompt: Bool) throws -> [Unicode.Scalar] {
                do { return Array(try tokenizer.applyChatTemplate(m, addGenerationPrompt: generationPrompt).unicodeScalars) } catch {
                    throw DataError.chatTemplate(path: path, line: record.line, reason: record.place + "\(error)")
                }
            }
            // maybe_apply_chat_template: the prompt is what the rendered prompt and prompt + answer share.
            let pt = try render(pm, true), pc = try render(pm + cm, false), pr = try render(pm + rm, false)
            var n = 0
            while n < pt.count && n < pc.count && pt[n] == pc[n] { n += 1 }
            var k = 0
            while k < n && k < pr.count && pt[k] == pr[k] { k += 1 }
            func text(_ s: ArraySlice<Unicode.Scalar>) -> String { var t = String.UnicodeScalarView(); t.append(contentsOf: s); return String(t) }
            (p, c, r) = (text(pt[..<k]), text(pc[k...]), text(pr[k...]))
        default: fatalError("checked by the caller")
        }
        return (p, c, r)
    }

    /// `CPOTrainer`'s pipeline (see `PreferenceTokenization.legacy`).
    static func legacyPair(_ prompt: Part, _ chosen: Part, _ rejected: Part, record: DataRecord, path: String,
                           tokenizer: Tokenizer) throws -> PreferencePair {
        let (p, c, r) = try legacyTexts(prompt, chosen, rejected, record: record, path: path, tokenizer: tokenizer)
        if c == r { throw record.malformed(path, "\"chosen\" equals \"rejected\"; a preference pair needs two different answers") }
        guard let eos = tokenizer.eosTokenId.map(Int32.init) else {
            throw DataError.invalidOptions(reason: "the tokenizer has no EOS token to end the answers of \(path) with")
        }
        let promptIds = tokenizer.encode32(p)
        func split(_ answer: String) throws -> (prompt: [Int32], answer: [Int32]) {
            let full = tokenizer.encode32(p + answer)
            guard full.count >= promptIds.count else {
                throw record.malformed(path, "the prompt gives more tokens alone than with its answer; the answer cannot be told apart")
            }
            var start = promptIds.count
            if Array(full.prefix(start)) != promptIds { start -= 1 }   // the prompt's last token merged with the answer
            return (Array(full[..<max(0, start)]), Array(full[max(0, start)...]))
        }
        var ch = try split(c), rj = try split(r)
        let differing = zip(ch.prompt, rj.prompt).filter { $0 != $1 }.count
        if differing > 1 || abs(ch.prompt.count - rj.prompt.count) > 1 {
            throw record.malformed(path, "the chosen and rejected prompts tokenize differently beyond their last token")
        }
        if let bos = tokenizer.bosTokenId.map(Int32.init) {
            if ch.prompt.first != bos { ch.prompt.insert(bos, at: 0) }
            if rj.prompt.first != bos { rj.prompt.insert(bos, at: 0) }
        }
        if ch.answer.last != eos { ch.answer.append(eos) }
        if rj.answer.last != eos { rj.answer.append(eos) }
        if ch.answer == rj.answer && ch.prompt == rj.prompt {
            throw record.malformed(path, "\"chosen\" and \"rejected\" give the same tokens; a preference pair needs two different answers")
        }
        return PreferencePair(prompt: ch.prompt, chosen: ch.answer, rejected: rj.answer, rejectedPrompt: rj.prompt == ch.prompt ? nil : rj.prompt)
    }

    static func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
        var n = 0
        while n < a.count && n < b.count && a[n] == b[n] { n += 1 }
        return n
    }

    /// TRL's `extract_prompt`: the chosen and rejected parts up to their first difference (a
    /// space before it goes with the answers) are the prompt. As TRL's loop does, when one is a
    /// prefix of the other the prompt stops one element short of the shorter.
    static func extractPrompt(_ chosen: Part, _ rejected: Part, record: DataRecord, path: String) throws -> (Part, Part, Part) {
        func split<T: Equatable>(_ c: [T], _ r: [T], space: T?) -> Int {
            var idx = 0
            let n = min(c.count, r.count)
            guard n > 0 else { return 0 }
            for i in 0..<n {
                idx = i
                if c[i] != r[i] {
                    if let space, i > 0, c[i - 1] == space { idx -= 1 }
                    return idx
                }
            }
            return idx
        }
        switch (chosen, rejected) {
        case let (.messages(c), .messages(r)):
            let k = split(c, r, space: nil)
            return (.messages(Array(c[..<k])), .messages(Array(c[k...])), .messages(Array(r[k...])))
        case let (.text(c), .text(r)):
            // By code point, as Python indexes a str.
            let cc = Array(c.unicodeScalars), rc = Array(r.unicodeScalars)
            let k = split(cc, rc, space: " ")
            func text(_ s: ArraySlice<Unicode.Scalar>) -> String { var t = String.UnicodeScalarView(); t.append(contentsOf: s); return String(t) }
            return (.text(text(cc[..<k])), .text(text(cc[k...])), .text(text(rc[k...])))
        default:
            throw record.malformed(path, "\"chosen\" and \"rejected\" must both be text or both be message lists")
        }
    }
}
