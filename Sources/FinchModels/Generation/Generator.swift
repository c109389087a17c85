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
        guard maxNewTokens >= 0 else { throw ModelError.badSetting(name: "max new tokens", value: "\(maxNewTokens)", allowed: "≥ 0") }
        for (i, p) in prompts.enumerated() where p.isEmpty {
            throw ModelError.emptySequence(what: "\(what) \(i)")
        }
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

/// Generates continuations for a batch of prompts, streaming text as it comes: every prompt
/// joins one `BatchEngine` (the one decode loop), all prompts read in the first pass, every
/// sequence with the model's active adapter and its own seed.
public final class Generator {
    public let lm: LoadedModel

    public init(_ lm: LoadedModel) { self.lm = lm }

    /// End-of-sequence ids from the tokenizer and the model config.
    public var defaultStopTokens: Set<Int> { lm.defaultStopTokens }

    /// Generates for prompts given as text, turned into tokens by the model's prompt format.
    public func generate(prompts: [String], options: GenerationOptions,
                         onText: ((_ sequence: Int, _ text: String) -> Void)? = nil) throws -> [GenerationResult] {
        try generate(promptTokens: prompts.map { lm.prompts.tokens(prompt: $0) }, options: options, onText: onText)
    }

    /// Generates for token prompts. `onText` receives each sequence's text as it becomes final
    /// (whole UTF-8 characters, never part of a possible stop string).
    public func generate(promptTokens: [[Int]], options: GenerationOptions,
                         onText: ((_ sequence: Int, _ text: String) -> Void)? = nil) throws -> [GenerationResult] {
        try options.validate(promptTokens)
        let n = promptTokens.count
        if n == 0 { return [] }
        let engine = BatchEngine(lm: lm, maxBatch: n, stepTokens: max(1, promptTokens.reduce(0) { $0 + $1.count }),
                                 adapters: .active, skipSpecialTokens: lm.prompts.skipsSpecialTokensInOutput)
        var tokens = [[Int]](repeating: [], count: n)
        var results = [GenerationResult?](repeating: nil, count: n)
        var failure: (Int, String)?
        for i in 0..<n {
            let request = GenerationRequest(promptTokens: promptTokens[i], maxTokens: options.maxNewTokens,
                                            sampling: options.sampling, seed: options.seed &+ UInt64(i),
                                            stopStrings: options.stopStrings, stopTokenIds: options.stopTokenIds)
            engine.submit(request) { event in
                switch event {
                case .promptLogprobs: break
                case .token(let id, let text, _):
                    tokens[i].append(id)
                    if !text.isEmpty { onText?(i, text) }
                case .finished(let c):
                    if let end = c.endToken { tokens[i].append(end.id) }
                    results[i] = GenerationResult(text: c.text, tokens: tokens[i], finishReason: c.reason,
                                                  promptTokenCount: c.promptTokens)
                case .failed(let message):
                    if failure == nil { failure = (i, message) }
                }
            }
        }
        while engine.step() != nil {
            if let (i, message) = failure { engine.failAll(message); throw ModelError.generationFailed(sequence: i, reason: message) }
        }
        if let (i, message) = failure { throw ModelError.generationFailed(sequence: i, reason: message) }
        return results.map { $0! }
    }
}
