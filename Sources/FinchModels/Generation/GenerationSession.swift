import FinchCore
import FinchTokenizer

/// One sequence being generated, for every kind of model: its sampler, the tokens the decoder has
/// read, the text streamed out so far, and why it ended. The one place where a sampled token
/// becomes text and is checked against the stop ids, stop strings and the length limit; the batch
/// engine holds one per sequence, and through it `Generator`, `finch generate` / `chat`, batch
/// predictions and the server.
public final class GenerationSession {
    /// New tokens at most.
    public let maxTokens: Int
    public let stopTokenIds: Set<Int>
    public let stopStrings: [String]
    private var sampler: Sampler
    private let decoder: TokenStreamDecoder
    /// What the decoder has read (a decoder-only model's prompt; T5's start id) and generated:
    /// the tokens a repetition penalty looks at, as transformers applies it to `input_ids`.
    public private(set) var history: [Int]
    /// Generated tokens, a final end-of-sequence token included.
    public private(set) var generated: [Int] = []
    /// The text so far (a stop string and what follows it cut off).
    public private(set) var text = ""
    /// Characters of `text` already handed out.
    private var emitted = 0
    /// Why the sequence ended; nil while it runs.
    public private(set) var finishReason: FinishReason?

    public init(decoderInput: [Int], maxTokens: Int, sampling: SamplingOptions, seed: UInt64,
                stopTokenIds: Set<Int>, stopStrings: [String], decoder: TokenStreamDecoder) {
        self.maxTokens = maxTokens; self.stopTokenIds = stopTokenIds; self.stopStrings = stopStrings
        self.sampler = Sampler(options: sampling, seed: seed)
        self.decoder = decoder
        self.history = decoderInput
        if maxTokens <= 0 { finishReason = .length }
    }

    /// Picks the next token from `logits` (one row [V]).
    public func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        sampler.next(logits: logits, history: history)
    }

    /// Takes `token` as the next one: returns the text that became final with it (whole
    /// characters, never the start of a possible stop string; possibly empty). Sets
    /// `finishReason` when the token ends the sequence.
    @discardableResult
    public func accept(_ token: Int) -> String {
        precondition(finishReason == nil, "the sequence has finished")
        generated.append(token)
        history.append(token)
        if stopTokenIds.contains(token) {
            finishReason = .endOfSequence
        } else {
            text += decoder.append(token)
            if let cut = Self.firstStop(in: text, stops: stopStrings) {
                text = String(text[..<cut])
                finishReason = .stopString
            } else if generated.count >= maxTokens {
                finishReason = .length
            }
        }
        // A finished sequence releases bytes the decoder held back (a stop string already cut the text).
        if finishReason == .length || finishReason == .endOfSequence { text += decoder.flush() }
        let safe = finishReason != nil ? text.count : text.count - Self.heldBack(text, stops: stopStrings)
        guard safe > emitted else { return "" }
        let from = text.index(text.startIndex, offsetBy: emitted)
        emitted = safe
        return String(text[from..<text.index(text.startIndex, offsetBy: safe)])
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
