import FinchCore
import FinchTokenizer
import Foundation

/// Settings of one generation call.
public struct GenerationOptions: Sendable {
    public var maxNewTokens: Int = 128
    public var sampling = SamplingOptions()
    /// Sequence i of a batch samples with seed `seed + i`, so a batch of one repeats a single run.
    public var seed: UInt64 = 0
    /// Generation stops when the output contains one of these; the output ends before it.
    public var stopStrings: [String] = []
    /// Tokens that end generation (nil: the tokenizer's and config's end-of-sequence tokens).
    public var stopTokenIds: Set<Int>? = nil

    public init(maxNewTokens: Int = 128, sampling: SamplingOptions = SamplingOptions(), seed: UInt64 = 0,
                stopStrings: [String] = [], stopTokenIds: Set<Int>? = nil) {
        self.maxNewTokens = maxNewTokens; self.sampling = sampling; self.seed = seed
        self.stopStrings = stopStrings; self.stopTokenIds = stopTokenIds
    }
}

extension GenerationOptions {
    /// Checks the options and the prompts (none may be empty; `what` names them in the error).
    func validate(_ prompts: [[Int]], what: String = "prompt") throws {
        try sampling.validate()
        guard maxNewTokens >= 0 else { throw ModelError.badInput("max new tokens must be ≥ 0") }
        for (i, p) in prompts.enumerated() where p.isEmpty {
            throw ModelError.badInput("\(what) \(i) is empty; give at least one token")
        }
    }

    /// End-of-sequence ids from the tokenizer and the model config (a model's default stop tokens).
    static func endOfSequenceIds(model: [Int], tokenizer: Tokenizer) -> Set<Int> {
        var s = Set(model)
        if let e = tokenizer.eosTokenId { s.insert(e) }
        return s
    }
}

/// Why a sequence stopped.
public enum FinishReason: String, Sendable {
    case endOfSequence = "eos", stopString = "stop", length
}

/// One generated continuation.
public struct GenerationResult: Sendable {
    /// The continuation alone (without the stop string or end-of-sequence token).
    public var text: String
    /// Generated token ids (including a final end-of-sequence token, as transformers reports them).
    public var tokens: [Int]
    public var finishReason: FinishReason
    public var promptTokenCount: Int
}

/// Generates continuations for a batch of prompts with a KV cache, streaming text as it comes.
public final class Generator {
    public let lm: LanguageModel

    public init(_ lm: LanguageModel) { self.lm = lm }

    /// End-of-sequence ids from the tokenizer and the model config.
    public var defaultStopTokens: Set<Int> { GenerationOptions.endOfSequenceIds(model: lm.model.eosTokenIds, tokenizer: lm.tokenizer) }

    /// Generates for prompts given as text (encoded without added special tokens unless the tokenizer adds BOS).
    public func generate(prompts: [String], options: GenerationOptions,
                         onText: ((_ sequence: Int, _ text: String) -> Void)? = nil) throws -> [GenerationResult] {
        try generate(promptTokens: prompts.map { lm.tokenizer.encode($0, addSpecialTokens: true) },
                     options: options, onText: onText)
    }

    /// Generates for token prompts. `onText` receives each sequence's text as it becomes final
    /// (whole UTF-8 characters, never part of a possible stop string).
    public func generate(promptTokens: [[Int]], options: GenerationOptions,
                         onText: ((_ sequence: Int, _ text: String) -> Void)? = nil) throws -> [GenerationResult] {
        try options.validate(promptTokens)
        let stopIds = options.stopTokenIds ?? defaultStopTokens
        let model = lm.model
        let n = promptTokens.count
        struct State {
            var cache: KVCache
            var sampler: Sampler
            var history: [Int]
            var generated: [Int] = []
            var decoder: TokenStreamDecoder
            var text = ""
            var emitted = 0          // characters of `text` already passed to onText
            var finish: FinishReason? = nil
        }
        var states = (0..<n).map { i in
            State(cache: model.makeCache(capacity: promptTokens[i].count + options.maxNewTokens + 1),
                  sampler: Sampler(options: options.sampling, seed: options.seed &+ UInt64(i)),
                  history: promptTokens[i], decoder: lm.tokenizer.streamDecoder())
        }
        var pending = (0..<n).map { promptTokens[$0] }   // tokens to feed next, per sequence
        var active = options.maxNewTokens > 0 ? Array(0..<n) : []
        for i in 0..<n where options.maxNewTokens == 0 { states[i].finish = .length }

        while !active.isEmpty {
            let logits = try model.forward(active.map { SequenceInput(tokens: pending[$0], cache: states[$0].cache) },
                                           logits: .last)
            var still: [Int] = []
            for (slot, i) in active.enumerated() {
                let tok = states[i].sampler.next(logits: logits.row(logits.rows[slot].lowerBound), history: states[i].history)
                states[i].generated.append(tok)
                states[i].history.append(tok)
                pending[i] = [tok]
                if stopIds.contains(tok) {
                    states[i].finish = .endOfSequence
                } else {
                    states[i].text += states[i].decoder.append(tok)
                    if let cut = Self.firstStop(in: states[i].text, stops: options.stopStrings) {
                        states[i].text = String(states[i].text[..<cut])
                        states[i].finish = .stopString
                    } else if states[i].generated.count >= options.maxNewTokens {
                        states[i].finish = .length
                    }
                }
                // A finished sequence releases bytes the decoder held back (a stop string already cut the text).
                if states[i].finish == .length || states[i].finish == .endOfSequence {
                    states[i].text += states[i].decoder.flush()
                }
                // Emit what can no longer change.
                let safe = states[i].finish != nil ? states[i].text.count
                    : states[i].text.count - Self.heldBack(states[i].text, stops: options.stopStrings)
                if safe > states[i].emitted, let onText {
                    let t = states[i].text
                    let from = t.index(t.startIndex, offsetBy: states[i].emitted)
                    let to = t.index(t.startIndex, offsetBy: safe)
                    onText(i, String(t[from..<to]))
                    states[i].emitted = safe
                }
                if states[i].finish == nil { still.append(i) }
            }
            active = still
        }
        return states.enumerated().map { i, s in
            GenerationResult(text: s.text, tokens: s.generated, finishReason: s.finish ?? .length,
                             promptTokenCount: promptTokens[i].count)
        }
    }

    /// Start of the first stop string in `text`.
    public static func firstStop(in text: String, stops: [String]) -> String.Index? {
        var best: String.Index?
        for s in stops where !s.isEmpty {
            if let r = text.range(of: s), best == nil || r.lowerBound < best! { best = r.lowerBound }
        }
        return best
    }

    /// Characters at the end of `text` that could begin a stop string (not yet safe to show).
    public static func heldBack(_ text: String, stops: [String]) -> Int {
        var hold = 0
        for s in stops where !s.isEmpty {
            let sc = Array(s)
            let tail = Array(text.suffix(sc.count - 1))
            for len in stride(from: min(tail.count, sc.count - 1), to: 0, by: -1)
                where Array(tail.suffix(len)) == Array(sc.prefix(len)) {
                hold = max(hold, len)
                break
            }
        }
        return hold
    }
}
