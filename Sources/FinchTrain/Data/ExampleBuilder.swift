import FinchCore
import FinchTokenizer

/// Tokenizes the text of one record into a ``TrainingExample`` the way qlora's
/// `DataCollatorForCausalLM` does: source and target tokenized separately, without special
/// tokens, BOS before the source when the tokenizer adds one, EOS after the target; each part
/// cut to its own limit keeping its start, then the whole cut to `maxSeqLen`.
struct ExampleBuilder {
    let tokenizer: Tokenizer
    let options: DatasetOptions

    /// What became of one record.
    enum Outcome: Equatable {
        /// An example, and whether any limit cut it.
        case example(TrainingExample, truncated: Bool)
        /// No label was left to take a loss on (after the causal shift).
        case dropped
    }

    private var bos: [Int32] {
        tokenizer.addsBOS ? tokenizer.bosTokenId.map { [Int32($0)] } ?? [] : []
    }

    private var eos: [Int32] {
        options.addEOS ? tokenizer.eosTokenId.map { [Int32($0)] } ?? [] : []
    }

    /// A source (masked unless `trainOnSource`) followed by a target (trained), each with its
    /// own limit: `sourceMaxLen` counts the BOS, `targetMaxLen` the EOS.
    func sourceTarget(source: String, target: String) -> Outcome {
        if let start = options.decoderStartTokenId { return pair(source: source, target: target, start: start) }
        var truncated = false
        var src = bos + tokenizer.encode32(source)
        if let limit = options.sourceMaxLen, src.count > limit {
            src.removeLast(src.count - limit)
            truncated = true
        }
        var tgt = tokenizer.encode32(target) + eos
        if let limit = options.targetMaxLen, tgt.count > limit {
            tgt.removeLast(tgt.count - limit)
            truncated = true
        }
        let srcLabels = options.trainOnSource ? src : Array(repeating: CrossEntropy.ignoreIndex, count: src.count)
        return finish(tokens: src + tgt, labels: srcLabels + tgt, truncated: truncated)
    }

    /// An encoder-decoder pair as transformers' seq2seq collators build it: the source and the
    /// target each tokenized with the tokenizer's special tokens (T5 appends `</s>`), each cut to
    /// its limit (`sourceMaxLen` / `targetMaxLen`, then `maxSeqLen`) before that last token; the
    /// decoder reads the start id then the target, and is trained on the target.
    func pair(source: String, target: String, start: Int32) -> Outcome {
        var truncated = false
        func cut(_ ids: [Int32], _ limit: Int?) -> [Int32] {
            let most = min(limit ?? options.maxSeqLen, options.maxSeqLen) - eos.count
            guard ids.count > most else { return ids + eos }
            truncated = true
            return Array(ids.prefix(max(0, most))) + eos
        }
        let src = cut(tokenizer.encode32(source), options.sourceMaxLen)
        let tgt = cut(tokenizer.encode32(target), options.targetMaxLen)
        let example = TrainingExample(tokens: [start] + tgt, labels: [CrossEntropy.ignoreIndex] + tgt, source: src)
        return !src.isEmpty && example.lossTokenCount > 0 ? .example(example, truncated: truncated) : .dropped
    }

    /// Segments in order (BOS first when `withBOS` and the tokenizer adds one, EOS after the
    /// last segment when `eosAfterLast`), each masked or trained, the whole cut to `maxSeqLen`.
    func segments(_ segments: [TextSegment], eosAfterLast: Bool, withBOS: Bool = true) -> Outcome {
        let bos = withBOS ? self.bos : []
        var tokens = bos
        var labels = options.trainOnSource ? bos : Array(repeating: CrossEntropy.ignoreIndex, count: bos.count)
        for (i, s) in segments.enumerated() {
            var ids = s.text.isEmpty ? [] : tokenizer.encode32(s.text)
            if eosAfterLast && i == segments.count - 1 { ids += eos }
            tokens += ids
            labels += (s.trained || options.trainOnSource)
                ? ids : Array(repeating: CrossEntropy.ignoreIndex, count: ids.count)
        }
        return finish(tokens: tokens, labels: labels, truncated: false)
    }

    /// Cuts to `maxSeqLen` and drops examples with nothing to learn.
    private func finish(tokens: [Int32], labels: [Int32], truncated: Bool) -> Outcome {
        var t = tokens, l = labels, cut = truncated
        if t.count > options.maxSeqLen {
            t.removeLast(t.count - options.maxSeqLen)
            l.removeLast(l.count - options.maxSeqLen)
            cut = true
        }
        let example = TrainingExample(tokens: t, labels: l)
        return example.lossTokenCount > 0 ? .example(example, truncated: cut) : .dropped
    }

    /// A document tokenized whole (BOS first, EOS last when asked) and cut into pieces of
    /// `maxSeqLen` tokens, every token trained; pieces with nothing to learn (a single
    /// trailing token) are left out, and counted in the second result.
    func chunks(of text: String) -> (examples: [TrainingExample], dropped: Int) {
        let ids = bos + tokenizer.encode32(text) + eos
        var out: [TrainingExample] = []
        var dropped = 0
        var start = 0
        while start < ids.count {
            let end = min(start + options.maxSeqLen, ids.count)
            let piece = Array(ids[start..<end])
            let example = TrainingExample(tokens: piece, labels: piece)
            if example.lossTokenCount > 0 { out.append(example) } else { dropped += 1 }
            start = end
        }
        return (out, dropped)
    }
}
