import FinchCore
import Foundation

/// What one sequence of a server request asks the engine for: a tokenized prompt and how to continue it.
public struct GenerationRequest: Sendable {
    public var promptTokens: [Int]
    /// The adapter this sequence runs with (nil: the base model).
    public var adapter: String?
    /// New tokens at most (0: only score the prompt).
    public var maxTokens: Int
    public var sampling: SamplingOptions
    public var seed: UInt64
    /// Generation stops when the text contains one of these; the text ends before it.
    public var stopStrings: [String]
    /// Tokens that end generation (nil: the model's end-of-sequence tokens).
    public var stopTokenIds: Set<Int>?
    /// Log-probabilities of the generated tokens, with this many alternatives each (nil: none).
    public var logprobs: Int?
    /// Log-probabilities of the prompt's tokens too (`echo` with `logprobs`), `logprobs ?? 0` alternatives.
    public var promptLogprobs: Bool

    public init(promptTokens: [Int], adapter: String? = nil, maxTokens: Int, sampling: SamplingOptions = SamplingOptions(),
                seed: UInt64 = 0, stopStrings: [String] = [], stopTokenIds: Set<Int>? = nil, logprobs: Int? = nil,
                promptLogprobs: Bool = false) {
        self.promptTokens = promptTokens; self.adapter = adapter; self.maxTokens = maxTokens; self.sampling = sampling
        self.seed = seed; self.stopStrings = stopStrings; self.stopTokenIds = stopTokenIds; self.logprobs = logprobs
        self.promptLogprobs = promptLogprobs
    }
}

/// A token's log-probability under the model (log-softmax of the raw logits, before sampling
/// settings), with the most likely alternatives at its position.
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    /// The most likely tokens at this position, most likely first.
    public var top: [(token: Int, logprob: Float)]

    public static func == (a: TokenLogprob, b: TokenLogprob) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.top.count == b.top.count
            && zip(a.top, b.top).allSatisfy { $0.token == $1.token && $0.logprob == $1.logprob }
    }
}

/// What the engine reports about a sequence, in order: the prompt's scores (when asked), then
/// one `token` per generated token, then `finished` (or `failed`).
public enum GenerationEvent: Sendable {
    /// One entry per prompt token; the first is nil (nothing predicts it).
    case promptLogprobs([TokenLogprob?])
    /// A generated token. `text` is the text that became final with it (possibly empty: bytes of a
    /// character still incomplete, or the start of a possible stop string). An end-of-sequence
    /// token is not reported (only counted in `completionTokens`).
    case token(id: Int, text: String, logprob: TokenLogprob?)
    case finished(Completion)
    case failed(String)
}

/// How a sequence ended.
public struct Completion: Sendable {
    public var reason: FinishReason
    /// The whole generated text (without a stop string).
    public var text: String
    public var promptTokens: Int
    /// Generated tokens, the end-of-sequence token included.
    public var completionTokens: Int
    /// The end-of-sequence token that ended it (not part of the text, and not reported as a
    /// `token` event), with its log-probability when they were asked for: OpenAI's completion
    /// logprobs list it, and lm-evaluation-harness counts on a last generated entry.
    public var endToken: (id: Int, logprob: TokenLogprob?)?
}

/// Log-softmax of one row of logits and the top-k tokens.
enum LogSoftmax {
    /// log p(token) for every entry of `logits`, in place into `out`.
    static func apply(_ logits: UnsafeBufferPointer<Float>, into out: inout [Float]) {
        let lse = CrossEntropy.logSumExp(logits)
        if out.count != logits.count { out = [Float](repeating: 0, count: logits.count) }
        for i in 0..<logits.count { out[i] = logits[i] - lse }
    }

    /// The k most likely entries, most likely first (ties: lower id first).
    static func top(_ logprobs: [Float], k: Int) -> [(token: Int, logprob: Float)] {
        guard k > 0 else { return [] }
        var best: [(token: Int, logprob: Float)] = []
        best.reserveCapacity(k + 1)
        for (i, v) in logprobs.enumerated() {
            if best.count == k, let last = best.last, !(v > last.logprob) { continue }
            var at = best.count
            while at > 0 && v > best[at - 1].logprob { at -= 1 }
            best.insert((i, v), at: at)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    static func entry(token: Int, row: UnsafeBufferPointer<Float>, top k: Int, scratch: inout [Float]) -> TokenLogprob {
        apply(row, into: &scratch)
        return TokenLogprob(token: token, logprob: scratch[token], top: top(scratch, k: k))
    }
}
