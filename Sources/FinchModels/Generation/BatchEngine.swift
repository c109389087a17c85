import FinchCore
import FinchLoRA
import FinchTokenizer
import Foundation

/// Continuous batching over one model, of any kind: sequences join and leave between steps,
/// and every step runs all of them together: the inputs still being read (in chunks) next to the
/// sequences decoding one token each, each row with its own adapter (or all with the model's
/// active adapter). The one decode loop: `Generator` (`finch generate`, chat, batch predictions)
/// and the server's `InferenceEngine` both drive it; each sequence is a `GenerationSession`.
///
/// Synchronous and single-threaded: `step()` runs one forward pass.
public final class BatchEngine {
    public let lm: LoadedModel
    /// Sequences decoded together at most; the others wait in arrival order.
    public let maxBatch: Int
    /// New tokens one forward pass reads at most (decoding rows first, then prompt chunks).
    public let stepTokens: Int
    /// Which adapter a row runs with.
    public enum Adapters: Sendable {
        /// Each request's own (`GenerationRequest.adapter`, nil = the base model): the server.
        case perRequest
        /// The model's active adapter for every row (what `finch generate` loaded).
        case active
    }
    public let adapters: Adapters
    /// Whether special tokens are left out of the text.
    public let skipSpecialTokens: Bool
    /// Prompt rows of one pass that keeps every row's logits (prompt log-probabilities).
    static let scoringChunk = 256

    final class Seq {
        let id: Int
        let request: GenerationRequest
        let emit: (GenerationEvent) -> Void
        let isCancelled: () -> Bool
        /// The model's state of the sequence, from `LanguageModel.start` when it was admitted.
        var state: (any SequenceState)?
        /// What the decoder reads before the first sampled token (`StartedSequence.input`).
        var input: [Int] = []
        var session: GenerationSession?
        /// Tokens of `input` read so far.
        var fed = 0
        /// The last sampled token, to be read next.
        var next: Int?
        var promptScores: [TokenLogprob?] = []
        var finished = false

        init(id: Int, request: GenerationRequest, emit: @escaping (GenerationEvent) -> Void,
             isCancelled: @escaping () -> Bool) {
            self.id = id; self.request = request; self.emit = emit; self.isCancelled = isCancelled
        }

        var prefilling: Bool { fed < input.count }
    }

    private(set) var running: [Seq] = []
    private(set) var waiting: [Seq] = []
    /// States of finished sequences, for the model to recycle.
    private var freeStates: [any SequenceState] = []
    private var nextId = 0
    private var scores: [Float] = []
    let stopIds: Set<Int>

    /// What the last step did, for metrics.
    public struct StepReport: Sendable {
        /// Sequences in the forward pass, and how many of them read prompt tokens.
        public var sequences: Int, prefilling: Int
        /// Rows (new tokens) the pass read.
        public var rows: Int
        /// Tokens generated.
        public var generated: Int
    }

    public init(lm: LoadedModel, maxBatch: Int, stepTokens: Int = 512, adapters: Adapters = .perRequest,
                skipSpecialTokens: Bool = true) {
        precondition(maxBatch >= 1 && stepTokens >= 1)
        self.lm = lm; self.maxBatch = maxBatch; self.stepTokens = max(stepTokens, maxBatch)
        self.adapters = adapters; self.skipSpecialTokens = skipSpecialTokens
        stopIds = lm.defaultStopTokens
    }

    /// Whether no sequence is running or waiting.
    public var isIdle: Bool { running.isEmpty && waiting.isEmpty }
    public var runningCount: Int { running.count }
    public var waitingCount: Int { waiting.count }

    /// Queues a sequence. `emit` is called (on the thread that runs `step`) with its events;
    /// once `isCancelled` returns true the sequence is dropped at the next step without more events.
    public func submit(_ request: GenerationRequest, emit: @escaping (GenerationEvent) -> Void,
                       isCancelled: @escaping () -> Bool = { false }) {
        nextId += 1
        waiting.append(Seq(id: nextId, request: request, emit: emit, isCancelled: isCancelled))
    }

    /// Runs one forward pass over the running sequences (admitting waiting ones first). Returns
    /// nil when there was nothing to do.
    @discardableResult
    public func step() -> StepReport? {
        for s in running + waiting where s.isCancelled() { release(s) }
        running.removeAll { $0.finished }
        waiting.removeAll { $0.finished }
        var admitted: [Seq] = []
        while running.count + admitted.count < maxBatch, !waiting.isEmpty {
            let s = waiting.removeFirst()
            if let problem = check(s.request) { s.emit(.failed(problem)); continue }
            admitted.append(s)
        }
        if !admitted.isEmpty { start(admitted) }
        guard !running.isEmpty else { return nil }

        // Decoding rows first (one token each), then prompt chunks in arrival order.
        var budget = stepTokens
        var batch: [(seq: Seq, tokens: [Int])] = []
        var scoring: (seq: Seq, tokens: [Int])?
        for s in running where !s.prefilling {
            batch.append((s, [s.next!]))
            budget -= 1
        }
        for s in running where s.prefilling && budget > 0 {
            let p = s.input
            if s.request.promptLogprobs {
                guard scoring == nil else { continue }   // one scored prompt chunk per pass
                let n = min(p.count - s.fed, Self.scoringChunk, budget)
                scoring = (s, Array(p[s.fed..<(s.fed + n)]))
                budget -= n
            } else {
                let n = min(p.count - s.fed, budget)
                batch.append((s, Array(p[s.fed..<(s.fed + n)])))
                budget -= n
            }
        }
        var report = StepReport(sequences: batch.count + (scoring == nil ? 0 : 1),
                                prefilling: batch.filter { $0.seq.prefilling }.count + (scoring == nil ? 0 : 1),
                                rows: batch.reduce(0) { $0 + $1.tokens.count } + (scoring?.tokens.count ?? 0),
                                generated: 0)
        if let scoring { report.generated += runScoring(scoring.seq, scoring.tokens) }
        if !batch.isEmpty { report.generated += runBatch(batch) }
        running.removeAll { $0.finished }
        return report
    }

    /// Starts the admitted sequences in one call (an encoder-decoder model encodes them together),
    /// with room for the prompt and the first answer tokens: a state grows when an answer runs
    /// longer (a request's max_tokens is a bound, often far above what it generates).
    private func start(_ seqs: [Seq]) {
        let started: [StartedSequence]
        let pool = freeStates
        do {
            started = try lm.model.start(seqs.map(\.request.promptTokens),
                                         capacity: min(seqs.map(\.request.maxTokens).max()!, 256), reusing: pool,
                                         adapters: adapters == .perRequest ? seqs.map(\.request.adapter) : nil)
        } catch {
            for s in seqs { s.emit(.failed("\(error)")) }
            return
        }
        freeStates = pool.filter { p in !started.contains { $0.state === p } }
        for (s, st) in zip(seqs, started) {
            let r = s.request
            s.state = st.state
            s.input = st.input
            s.session = GenerationSession(decoderInput: st.input, maxTokens: r.maxTokens, sampling: r.sampling, seed: r.seed,
                                          stopTokenIds: r.stopTokenIds ?? stopIds, stopStrings: r.stopStrings,
                                          decoder: lm.tokenizer.streamDecoder(skipSpecialTokens: skipSpecialTokens))
            running.append(s)
        }
    }

    /// Why a request cannot run, checked when it is admitted (the server checks earlier too).
    private func check(_ r: GenerationRequest) -> String? {
        if r.promptTokens.isEmpty { return "the prompt is empty" }
        if let bad = r.promptTokens.first(where: { $0 < 0 || $0 >= lm.model.vocabSize }) {
            return "token id \(bad) is outside the vocabulary (0..<\(lm.model.vocabSize))"
        }
        if let a = r.adapter, !lm.model.adapterNames.contains(a) { return "no adapter named '\(a)' is loaded" }
        if r.promptLogprobs && lm.model.kind != .decoderOnly {
            return "prompt log-probabilities (echo) need a decoder-only model: an encoder-decoder model reads the prompt as its source and predicts none of it"
        }
        do { try r.sampling.validate() } catch { return "\(error)" }
        return nil
    }

    /// One forward pass over the batch, rows grouped by adapter; samples for every sequence whose prompt is read.
    private func runBatch(_ batch: [(seq: Seq, tokens: [Int])]) -> Int {
        // Sequences of one adapter side by side: one span (one pair of adapter products) each.
        let order = batch.indices.sorted {
            let a = batch[$0].seq.request.adapter ?? "", b = batch[$1].seq.request.adapter ?? ""
            return a != b ? a < b : $0 < $1
        }
        var spans: [AdapterSpan] = []
        var row = 0
        for i in order {
            let n = batch[i].tokens.count, adapter = batch[i].seq.request.adapter
            if let last = spans.last, last.adapter == adapter, last.rows.upperBound == row {
                spans[spans.count - 1].rows = last.rows.lowerBound..<(row + n)
            } else {
                spans.append(AdapterSpan(rows: row..<(row + n), adapter: adapter))
            }
            row += n
        }
        let inputs = order.map { StepInput(tokens: batch[$0].tokens, state: batch[$0].seq.state!) }
        let logits: Logits
        do {
            logits = try lm.model.step(inputs, logits: .last, adapters: adapters == .perRequest ? spans : nil)
        } catch {
            for b in batch { fail(b.seq, "\(error)") }
            return 0
        }
        var generated = 0
        for (slot, i) in order.enumerated() {
            let (s, tokens) = batch[i]
            let row = logits.row(logits.rows[slot].lowerBound)
            if s.prefilling {
                s.fed += tokens.count
                generated += promptRead(s, lastRow: row)
            } else {
                sample(s, row)
                generated += 1
            }
        }
        return generated
    }

    /// After a chunk of a sequence's prompt: once the whole prompt is read, reports its scores
    /// (when asked), then finishes (`max_tokens` 0) or samples the first token from the prompt's
    /// last row. Returns the tokens generated (0 or 1).
    private func promptRead(_ s: Seq, lastRow: UnsafeBufferPointer<Float>) -> Int {
        if s.prefilling { return 0 }
        if s.request.promptLogprobs { s.emit(.promptLogprobs(s.promptScores)) }
        if s.request.maxTokens == 0 { finish(s, .length); return 0 }
        sample(s, lastRow)
        return 1
    }

    /// Reads a prompt chunk of a sequence that wants its prompt scored, keeping every row's logits.
    private func runScoring(_ s: Seq, _ tokens: [Int]) -> Int {
        let logits: Logits
        do {
            logits = try lm.model.step([StepInput(tokens: tokens, state: s.state!)], logits: .all,
                                       adapters: adapters == .perRequest ? [AdapterSpan(rows: 0..<tokens.count, adapter: s.request.adapter)] : nil)
        } catch {
            fail(s, "\(error)")
            return 0
        }
        let prompt = s.input, k = s.request.logprobs ?? 0
        if s.fed == 0 { s.promptScores.append(nil) }
        for j in 0..<tokens.count where s.fed + j + 1 < prompt.count {
            s.promptScores.append(LogSoftmax.entry(token: prompt[s.fed + j + 1], row: logits.row(j), top: k, scratch: &scores))
        }
        s.fed += tokens.count
        return promptRead(s, lastRow: logits.row(tokens.count - 1))
    }

    /// Picks the next token from a sequence's logits and reports it.
    private func sample(_ s: Seq, _ row: UnsafeBufferPointer<Float>) {
        let session = s.session!
        let tok = session.sample(row)
        let lp = s.request.logprobs.map { LogSoftmax.entry(token: tok, row: row, top: $0, scratch: &scores) }
        s.next = tok
        let delta = session.accept(tok)
        let reason = session.finishReason
        // The end-of-sequence token is counted but not reported: it is no part of the answer.
        if reason != .endOfSequence { s.emit(.token(id: tok, text: delta, logprob: lp)) }
        if let reason { finish(s, reason, endToken: reason == .endOfSequence ? (tok, lp) : nil) }
    }

    private func finish(_ s: Seq, _ reason: FinishReason, endToken: (id: Int, logprob: TokenLogprob?)? = nil) {
        s.emit(.finished(Completion(reason: reason, text: s.session?.text ?? "", promptTokens: s.request.promptTokens.count,
                                    completionTokens: s.session?.generated.count ?? 0, endToken: endToken)))
        release(s)
    }

    private func fail(_ s: Seq, _ message: String) {
        s.emit(.failed(message))
        release(s)
    }

    private func release(_ s: Seq) {
        s.finished = true
        if let st = s.state {
            if st.isRecyclable && freeStates.count < maxBatch { freeStates.append(st) }
            s.state = nil
        }
    }
}

extension BatchEngine {
    /// Ends every sequence with `failed` (shutdown).
    public func failAll(_ message: String) {
        for s in running + waiting where !s.finished { s.emit(.failed(message)); release(s) }
        running.removeAll()
        waiting.removeAll()
    }
}
