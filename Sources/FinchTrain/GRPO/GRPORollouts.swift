import FinchModels
import Foundation

/// One completion sampled for GRPO: the tokens the model sampled (a final end-of-sequence token included, as
/// TRL's completions include it, and the tokens of a stop string too: they are the policy's own), the text the
/// rewards read (without the stop string), and whether it ran into `max_completion_length`.
public struct GRPORollout: Sendable, Equatable {
    /// Which prompt of the batch it answers.
    public var prompt: Int
    public var tokens: [Int]
    public var text: String
    public var truncated: Bool
}

public enum GRPORollouts {
    /// Samples `generations` completions of each prompt, every one of them decoded together in one continuous
    /// batch with the model's active adapter (the one being trained: no copy of the weights), each with its own
    /// seed (`seed` + its index in the batch: the same seed gives the same rollouts). Returns them prompt by
    /// prompt, `generations` each, in order.
    public static func sample(lm: LoadedModel, prompts: [[Int]], generations: Int, maxCompletionLength: Int,
                              sampling: SamplingOptions, seed: UInt64, stopStrings: [String] = []) throws -> [GRPORollout] {
        precondition(generations > 0 && maxCompletionLength > 0)
        let repeated = prompts.flatMap { Array(repeating: $0, count: generations) }
        let options = GenerationOptions(maxNewTokens: maxCompletionLength, sampling: sampling, seed: seed, stopStrings: stopStrings)
        let results = try Generator(lm).generate(promptTokens: repeated, options: options)
        return results.enumerated().map { i, r in
            GRPORollout(prompt: i / generations, tokens: r.tokens, text: r.text, truncated: r.finishReason == .length)
        }
    }
}
