import FinchCore
import FinchModels
import FinchTrain
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
        /// Windows the model read (or, scoring pairs, the pairs).
        public var windows: Int
        /// Whether (context, continuation) pairs were scored rather than windows of one stream.
        public var pairs = false
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

    /// Scores `tokens` with `model` (its active adapter, if any), any kind: each window's
    /// unscored start is its context (a decoder-only model reads it first; an encoder-decoder model
    /// encodes it) and the rest is scored. Throws for a protocol whose window is shorter than 2
    /// tokens or a stride outside 1...maxSeqLen.
    public static func evaluate(_ model: any LanguageModel, tokens: [Int], method p: Method,
                                progress: ((_ window: Int, _ of: Int) -> Void)? = nil) throws -> Result {
        switch p {
        case .windows(let t) where t < 2, .strided(let t, _) where t < 2:
            throw EvalError(item: "window", "perplexity needs windows of at least 2 tokens", advice: "raise --max-seq-len")
        case .strided(let t, let s) where s < 1 || s > t:
            throw EvalError(item: "stride", "the stride must be between 1 and the window length (\(t)), got \(s)", advice: "change --stride")
        default: break
        }
        guard tokens.count >= 2 else { throw EvalError("perplexity needs at least 2 tokens, got \(tokens.count)", advice: "give a longer text") }
        let plan = windows(count: tokens.count, method: p)
        var nlls: [Double] = []
        nlls.reserveCapacity(tokens.count)
        for (w, window) in plan.enumerated() {
            let ids = Array(tokens[window.start..<window.end])
            if ids.count < 2 || window.scoredFrom >= ids.count { continue }
            let scored = try model.logLikelihoods([(Array(ids[..<window.scoredFrom]), Array(ids[window.scoredFrom...]))])[0]
            nlls += scored.map { -$0 }
            progress?(w + 1, plan.count)
        }
        return result(nlls, windows: plan.count)
    }

    /// Scores the continuation of each (context, continuation) pair given its context, every
    /// continuation token counted (a dataset of sources and targets: transformers'
    /// `model(input_ids=source, labels=target).loss`, averaged over all target tokens).
    public static func evaluate(_ model: any LanguageModel, pairs: [(context: [Int], continuation: [Int])], batchSize: Int = 8,
                                progress: ((_ done: Int, _ of: Int) -> Void)? = nil) throws -> Result {
        guard pairs.contains(where: { !$0.continuation.isEmpty }) else {
            throw EvalError("perplexity needs at least one token to score; every target is empty", advice: "give pairs with non-empty targets")
        }
        var nlls: [Double] = []
        var i = 0
        while i < pairs.count {
            let batch = Array(pairs[i..<min(i + max(1, batchSize), pairs.count)])
            for scored in try model.logLikelihoods(batch) { nlls += scored.map { -$0 } }
            i += batch.count
            progress?(i, pairs.count)
        }
        var r = result(nlls, windows: pairs.count)
        r.pairs = true
        return r
    }

    /// Perplexity of a file for `lm`: a plain-text file is tokenized whole (with the tokenizer's
    /// special tokens) and scored in windows; a JSON / JSONL dataset in any format `finch train`
    /// reads is tokenized as training would tokenize it for this model, every token counted: a
    /// decoder-only model's examples are concatenated and scored in windows, an encoder-decoder
    /// model's (source, target) pairs are scored as pairs.
    public static func evaluate(_ lm: LoadedModel, file: String, format: DatasetFormat?, method: Method,
                                progress: ((_ done: Int, _ of: Int) -> Void)? = nil) throws -> Result {
        let ext = (file as NSString).pathExtension.lowercased()
        if format == nil && ext != "json" && ext != "jsonl" {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw EvalFileError.unreadable(path: file, advice: "give a UTF-8 text file, or a .json / .jsonl dataset")
            }
            return try evaluate(lm.model, tokens: lm.prompts.tokens(prompt: text), method: method, progress: progress)
        }
        let start = lm.prompts.decoderStartTokenId
        var options = DatasetOptions(format: format, maxSeqLen: Int(Int32.max), trainOnSource: start == nil)
        options.decoderStartTokenId = start.map(Int32.init)
        let sequences = try TrainingData.load(path: file, options: options, tokenizer: lm.tokenizer)
        if start != nil {
            // The decoder reads the start id and the target; the pairs score the target.
            return try evaluate(lm.model, pairs: sequences.map { s in
                (s.source!.map(Int.init), s.tokens.dropFirst().map(Int.init))
            }, progress: progress)
        }
        return try evaluate(lm.model, tokens: sequences.flatMap { $0.tokens.map(Int.init) }, method: method, progress: progress)
    }

    static func result(_ nlls: [Double], windows: Int) -> Result {
        let n = nlls.count
        let sum = nlls.reduce(0, +), mean = sum / Double(n)
        let variance = n > 1 ? nlls.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1) : 0
        return Result(tokens: n, nllSum: sum, meanNLL: mean, standardError: (variance / Double(n)).squareRoot(),
                      windows: windows)
    }
}

/// An evaluation input file that cannot be used.
public enum EvalFileError: Error, CustomStringConvertible, Sendable {
    case unreadable(path: String, advice: String)
    public var description: String {
        switch self {
        case .unreadable(let path, let advice): return "\(path): cannot be read; \(advice)"
        }
    }
}
