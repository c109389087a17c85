import FinchCore
import FinchLoRA
import FinchTokenizer

// Dimension letters: R selected rows, V vocabulary.

/// A decoder-only language model: cached autoregressive inference on top of training. Its
/// `start` / `step` (the `LanguageModel` seam) are `makeCache` / `forward`.
public protocol CausalLM: LanguageModel {
    /// An empty key/value cache for one sequence.
    func makeCache(capacity: Int) -> KVCache
    /// Runs the new tokens of every sequence through the model, appending them to the
    /// sequences' caches, and returns the selected logits. `context.rowAdapters` gives runs of
    /// the new tokens (numbered in the order of the sequences) their own adapter (batched
    /// serving; checked by `LoRAHost.checkRowAdapters`); inference has no dropout.
    func forward(_ inputs: [SequenceInput], logits: LogitsSelection, context: PassContext) throws -> Logits
}

extension CausalLM {
    public var kind: ModelKind { .decoderOnly }

    public func makeCache() -> KVCache { makeCache(capacity: 256) }

    public func forward(_ inputs: [SequenceInput]) throws -> Logits { try forward(inputs, logits: .last) }

    /// A decoder-only model reads the prompts in `step` (with their adapters there): `adapters` is unused here.
    public func start(_ prompts: [[Int]], capacity: Int, reusing: [any SequenceState], adapters: [String?]?) throws -> [StartedSequence] {
        var spare = reusing.compactMap { $0 as? KVCache }
        return try prompts.enumerated().map { i, p in
            guard !p.isEmpty else { throw ModelError.emptyPrompt(index: i) }
            let cache: KVCache
            if let c = spare.popLast() { c.reset(); cache = c } else { cache = makeCache(capacity: p.count + capacity + 1) }
            return StartedSequence(state: cache, input: p)
        }
    }

    public func step(_ inputs: [StepInput], logits: LogitsSelection, adapters: [AdapterSpan]?) throws -> Logits {
        let seqs = try inputs.map { input in
            guard let cache = input.state as? KVCache else { throw ModelError.foreignSequenceState(model: architecture) }
            return SequenceInput(tokens: input.tokens, cache: cache)
        }
        return try forward(seqs, logits: logits, context: PassContext(backend: backend, rowAdapters: adapters))
    }

    /// `forward` with the active adapter on every row.
    public func forward(_ inputs: [SequenceInput], logits: LogitsSelection) throws -> Logits {
        try forward(inputs, logits: logits, context: PassContext(backend: backend))
    }

    /// Logits for a padded batch, as a Hugging Face model call with an attention mask would give
    /// for the unmasked positions. `tokens` [B][T]; `attentionMask` [B][T] of 0/1 (nil = all 1).
    /// Each row's unmasked tokens sit at positions 0, 1, … in order (left or right padding alike);
    /// masked positions get zero logits. Returns [B][T][V].
    public func logits(tokens: [[Int]], attentionMask: [[Int]]? = nil) throws -> [[[Float]]] {
        var inputs: [SequenceInput] = []
        var kept: [[Int]] = []
        for (b, row) in tokens.enumerated() {
            let mask = attentionMask?[b] ?? Array(repeating: 1, count: row.count)
            guard mask.count == row.count else {
                throw ModelError.maskMismatch(row: b, entries: mask.count, tokens: row.count)
            }
            let idx = row.indices.filter { mask[$0] != 0 }
            kept.append(idx)
            if !idx.isEmpty { inputs.append(SequenceInput(tokens: idx.map { row[$0] }, cache: makeCache(capacity: idx.count))) }
        }
        let out = inputs.isEmpty ? nil : try forward(inputs, logits: .all)
        var result: [[[Float]]] = []
        var seq = 0
        for (b, row) in tokens.enumerated() {
            var rows = Array(repeating: [Float](repeating: 0, count: vocabSize), count: row.count)
            if !kept[b].isEmpty, let out {
                for (j, t) in kept[b].enumerated() { rows[t] = Array(out.row(out.rows[seq].lowerBound + j)) }
                seq += 1
            }
            result.append(rows)
        }
        return result
    }
}

/// One sequence's input to a forward pass: new tokens appended after what its cache holds.
public struct SequenceInput {
    public var tokens: [Int]
    public var cache: KVCache
    public init(tokens: [Int], cache: KVCache) { self.tokens = tokens; self.cache = cache }
}

