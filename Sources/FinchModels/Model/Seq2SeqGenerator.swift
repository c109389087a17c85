import FinchCore
import FinchTokenizer
import Foundation

/// Generation with an encoder-decoder model: each source is encoded once (with the tokenizer's
/// special tokens, T5's `</s>`), then the decoder samples token by token from the start id with
/// its caches; the same options as `Generator` (sampling, per-sequence seeds, stop strings,
/// end-of-sequence ids).
public final class Seq2SeqGenerator {
    public let lm: Seq2SeqLanguageModel

    public init(_ lm: Seq2SeqLanguageModel) { self.lm = lm }

    /// End-of-sequence ids from the tokenizer and the model config.
    public var defaultStopTokens: Set<Int> { GenerationOptions.endOfSequenceIds(model: lm.model.eosTokenIds, tokenizer: lm.tokenizer) }

    public func generate(sources: [String], options: GenerationOptions) throws -> [GenerationResult] {
        let tokens = sources.map { lm.tokenizer.encode($0, addSpecialTokens: true) }
        try options.validate(tokens, what: "source")
        let stopIds = options.stopTokenIds ?? defaultStopTokens
        let caches = try lm.model.encode(tokens, capacity: options.maxNewTokens + 1)
        var samplers = sources.indices.map { Sampler(options: options.sampling, seed: options.seed &+ UInt64($0)) }
        var generated = sources.map { _ in [Int]() }
        var texts = sources.map { _ in "" }
        var finish = [FinishReason?](repeating: options.maxNewTokens == 0 ? .length : nil, count: sources.count)
        var next = sources.map { _ in lm.model.decoderStartTokenId }
        var active = options.maxNewTokens > 0 ? Array(sources.indices) : []
        while !active.isEmpty {
            let logits = try lm.model.decode(active.map { ([next[$0]], caches[$0]) }, logits: .last)
            var still: [Int] = []
            for (slot, i) in active.enumerated() {
                let tok = samplers[i].next(logits: logits.row(logits.rows[slot].lowerBound), history: generated[i])
                generated[i].append(tok)
                next[i] = tok
                if stopIds.contains(tok) {
                    finish[i] = .endOfSequence
                } else {
                    texts[i] = lm.tokenizer.decode(generated[i], skipSpecialTokens: true)
                    if let cut = Generator.firstStop(in: texts[i], stops: options.stopStrings) {
                        texts[i] = String(texts[i][..<cut]); finish[i] = .stopString
                    } else if generated[i].count >= options.maxNewTokens {
                        finish[i] = .length
                    }
                }
                if finish[i] == nil { still.append(i) }
            }
            active = still
        }
        return sources.indices.map { i in
            GenerationResult(text: texts[i], tokens: generated[i], finishReason: finish[i] ?? .length, promptTokenCount: tokens[i].count)
        }
    }
}
