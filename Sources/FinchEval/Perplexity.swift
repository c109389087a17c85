import FinchCore
import FinchModels
import Foundation

/// Perplexity of a causal LM over a token sequence, by the two protocols people compare with
/// transformers and llama.cpp.
public enum Perplexity {
    /// How the sequence is cut into windows the model reads.
    public enum Method: Sendable, Equatable {
        /// Non-overlapping windows of `maxSeqLen` tokens, each scored from its second token on.
        case windows(maxSeqLen: Int)
        /// transformers' sliding window: windows of `maxSeqLen` tokens starting every `stride`
        /// tokens, each scoring only the tokens no earlier window scored (more context per token).
        case strided(maxSeqLen: Int, stride: Int)
    }

    /// The result: perplexity = e^(mean NLL), with the standard error of the mean NLL.
    public struct Result: Sendable, Equatable {
        public var tokens: Int
        public var nllSum: Double
        public var meanNLL: Double
        /// Standard error of the mean NLL (sample standard deviation / √tokens).
        public var standardError: Double
        public var perplexity: Double { Foundation.exp(meanNLL) }
        /// The perplexity's standard error by the delta method (perplexity × standard error), as llama.cpp reports it.
        public var perplexityError: Double { perplexity * standardError }
        /// Windows the model read.
        public var windows: Int
    }

    /// The (start, end, first scored index within the window) of every window.
    public static func windows(count n: Int, method p: Method) -> [(start: Int, end: Int, scoredFrom: Int)] {
        var out: [(start: Int, end: Int, scoredFrom: Int)] = []
        switch p {
        case .windows(let t):
            var start = 0
            while start < n { out.append((start, min(start + t, n), 1)); start += t }
        case .strided(let t, let s):
            var begin = 0, prevEnd = 0
            while begin < n {
                let end = min(begin + t, n)
                out.append((begin, end, max(1, prevEnd - begin)))
                prevEnd = end
                if end == n { break }
                begin += s
            }
        }
        return out
    }

    /// Scores `tokens` with `model` (its active adapter, if any). Throws for a protocol whose
    /// window is shorter than 2 tokens or a stride outside 1...maxSeqLen.
    public static func evaluate(_ model: any CausalLM, tokens: [Int], method p: Method,
                                progress: ((_ window: Int, _ of: Int) -> Void)? = nil) throws -> Result {
        switch p {
        case .windows(let t) where t < 2, .strided(let t, _) where t < 2:
            throw ModelError.badInput("perplexity needs windows of at least 2 tokens")
        case .strided(let t, let s) where s < 1 || s > t:
            throw ModelError.badInput("the stride must be between 1 and the window length (\(t)), got \(s)")
        default: break
        }
        guard tokens.count >= 2 else { throw ModelError.badInput("perplexity needs at least 2 tokens, got \(tokens.count)") }
        let plan = windows(count: tokens.count, method: p)
        var nlls: [Double] = []
        nlls.reserveCapacity(tokens.count)
        for (w, window) in plan.enumerated() {
            let ids = Array(tokens[window.start..<window.end])
            if ids.count < 2 || window.scoredFrom >= ids.count { continue }
            let logits = try model.forward([SequenceInput(tokens: ids, cache: model.makeCache(capacity: ids.count))], logits: .all)
            for i in window.scoredFrom..<ids.count {
                let row = logits.row(i - 1)
                nlls.append(Double(CrossEntropy.logSumExp(row)) - Double(row[ids[i]]))
            }
            progress?(w + 1, plan.count)
        }
        let n = nlls.count
        let sum = nlls.reduce(0, +), mean = sum / Double(n)
        let variance = n > 1 ? nlls.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1) : 0
        return Result(tokens: n, nllSum: sum, meanNLL: mean, standardError: (variance / Double(n)).squareRoot(),
                      windows: plan.count)
    }
}
