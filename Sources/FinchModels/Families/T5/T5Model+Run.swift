import FinchCore
import FinchLoRA
import Foundation

// Dimension letters: N rows of a stack call, M encoder rows, C d_model, I inner width (H · D),
// V vocabulary.

extension T5Model {
    /// The encoder over packed `tokens` (sequences `ranges`) in `w`: the final-normed output in
    /// `w.encoderOutput` [M, C], the last block's output and the final norm's statistics in
    /// `w.encoderStream` and `w.encoderRstd`, each block's buffers (or, under checkpointing, its
    /// input) kept in `w`. Returns the sequences' self-attention segments.
    @discardableResult
    func runEncoder(tokens: [Int], ranges: [Range<Int>], in w: T5Workspace, context: PassContext,
                    table: ((Int) -> LinearWeight)? = nil) throws -> [T5SelfSegment] {
        let m = tokens.count, c = config.dModel
        if let table { try embed(tokens, into: w.encoderStream.pointer, table: table) } else {
            try embed(tokens, into: w.encoderStream.pointer, table: encoderEmbedding)
        }
        let segments = selfSegments(ranges, decoder: false)
        for (li, block) in encoder.enumerated() {
            if w.checkpointing { w.encoderInputs[li].pointer.update(from: w.encoderStream.pointer, count: m * c) }
            blockForward(block, layer: li, x: w.encoderStream.pointer, rows: m, selfSegments: segments, causal: false, cross: nil,
                         acts: w.acts(decoder: false, layer: li), context: context)
        }
        norm(w.encoderOutput.pointer, rstd: w.encoderRstd.pointer, w.encoderStream.pointer, encoderFinalNorm, rows: m)
        return segments
    }

    /// Each packed sequence's self-attention segment with its position bias (no cache).
    func selfSegments(_ ranges: [Range<Int>], decoder isDecoder: Bool) -> [T5SelfSegment] {
        ranges.map { T5SelfSegment(rows: $0, bias: positionBias(decoder: isDecoder, queries: $0.count, keys: $0.count, firstQuery: 0), cache: nil) }
    }

    // MARK: - Generation

    /// Runs the encoder over each source once and returns each sequence's cache (cross-attention
    /// keys and values of every decoder layer), ready for `decode`.
    public func encode(_ sources: [[Int]], capacity: Int, adapters: [String?]?) throws -> [EncoderDecoderCache] {
        var tokens: [Int] = [], ranges: [Range<Int>] = []
        for (i, s) in sources.enumerated() {
            guard !s.isEmpty else { throw ModelError.emptySequence(what: "source \(i)") }
            ranges.append(tokens.count..<(tokens.count + s.count)); tokens += s
        }
        let m = tokens.count, inner = config.innerDim
        // Each source's rows with its adapter: one span per run of sources of the same adapter.
        var spans: [AdapterSpan]?
        if let adapters {
            precondition(adapters.count == sources.count)
            var out: [AdapterSpan] = []
            for (r, a) in zip(ranges, adapters) {
                if let last = out.last, last.adapter == a { out[out.count - 1].rows = last.rows.lowerBound..<r.upperBound } else { out.append(AdapterSpan(rows: r, adapter: a)) }
            }
            try checkRowAdapters(out, rows: m)
            spans = out
        }
        let context = PassContext(backend: backend, rowAdapters: spans)
        let w = workspace(rows: 0, sourceRows: m, mode: .inference)
        let copies = rowCopies(spans, rows: m)
        try runEncoder(tokens: tokens, ranges: ranges, in: w, context: context,
                       table: copies.map { rc in { [shared] r in rc[r]["encoder.embed_tokens"]?.weight ?? shared } })
        let enc = w.encoderOutput
        var ks: [Buffer<Float>] = [], vs: [Buffer<Float>] = []
        for block in decoder {
            let k = Buffer<Float>(uninitializedCount: max(1, m * inner)), v = Buffer<Float>(uninitializedCount: max(1, m * inner))
            block[.crossK].forward(y: k.pointer, x: enc.pointer, xBF16: nil, rows: m, accumulate: false, scratch: scratch,
                                  context: context)
            block[.crossV].forward(y: v.pointer, x: enc.pointer, xBF16: nil, rows: m, accumulate: false, scratch: scratch,
                                  context: context)
            ks.append(k); vs.append(v)
        }
        return ranges.map { r in
            EncoderDecoderCache(encoderRows: r.count,
                    crossK: ks.map { Buffer(copying: $0.pointer + r.lowerBound * inner, count: r.count * inner) },
                    crossV: vs.map { Buffer(copying: $0.pointer + r.lowerBound * inner, count: r.count * inner) },
                    inner: inner, capacity: capacity)
        }
    }

    /// The encoder's output [S, C] for one source (final norm applied), row-major.
    public func encoderOutput(_ source: [Int]) throws -> [Float] {
        let w = workspace(rows: 0, sourceRows: source.count, mode: .inference)
        try runEncoder(tokens: source, ranges: [0..<source.count], in: w, context: PassContext(backend: backend))
        return Array(UnsafeBufferPointer(start: w.encoderOutput.pointer, count: source.count * config.dModel))
    }

    /// Runs new decoder tokens of each sequence (appended after what its cache holds) and returns
    /// the selected logits [R, V]. `context.rowAdapters`: runs of the new tokens with their own adapter.
    public func decode(_ inputs: [(tokens: [Int], cache: EncoderDecoderCache)], logits selection: LogitsSelection,
                       context: PassContext) throws -> Logits {
        let c = config.dModel, v = config.vocabSize
        var tokens: [Int] = [], segments: [T5SelfSegment] = []
        for (i, input) in inputs.enumerated() {
            guard !input.tokens.isEmpty else { throw ModelError.emptySequence(what: "the new decoder input of sequence \(i)") }
            if inputs[..<i].contains(where: { $0.cache === input.cache }) { throw ModelError.sharedSequenceState }
            let past = input.cache.length, r = tokens.count..<(tokens.count + input.tokens.count)
            input.cache.reserve(past + r.count)
            segments.append(T5SelfSegment(rows: r, bias: positionBias(decoder: true, queries: r.count, keys: past + r.count, firstQuery: past),
                                          cache: input.cache))
            tokens += input.tokens
        }
        let n = tokens.count
        if let spans = context.rowAdapters { try checkRowAdapters(spans, rows: n) }
        let w = workspace(rows: n, sourceRows: 0, mode: .inference)
        let x = w.decoderStream
        // Per-request adapters: each row's embedding and head its adapter's copies where it has them.
        let copies = rowCopies(context.rowAdapters, rows: n)
        if let copies {
            try embed(tokens, into: x.pointer) { [shared] r in copies[r]["decoder.embed_tokens"]?.weight ?? shared }
        } else {
            try embed(tokens, into: x.pointer, table: decoderEmbedding)
        }
        for (li, block) in decoder.enumerated() {
            blockForward(block, layer: li, x: x.pointer, rows: n, selfSegments: segments, causal: true,
                         cross: .cached(inputs.map(\.cache)), acts: w.acts(decoder: true, layer: li),
                         context: PassContext(backend: backend, rowAdapters: context.rowAdapters))
        }
        for input in inputs { input.cache.advance(by: input.tokens.count) }
        var picked: [Int] = [], ranges: [Range<Int>] = []
        for s in segments {
            let first = picked.count
            switch selection {
            case .all: picked += Array(s.rows)
            case .last: picked.append(s.rows.upperBound - 1)
            }
            ranges.append(first..<picked.count)
        }
        let sel = Buffer<Float>(count: max(1, picked.count * c))
        for (i, row) in picked.enumerated() { (sel.pointer + i * c).update(from: x.pointer + row * c, count: c) }
        norm(sel.pointer, rstd: nil, sel.pointer, decoderFinalNorm, rows: picked.count)
        if let s = outputScale { backend.scale(sel.pointer, count: picked.count * c, by: s) }
        let out = Buffer<Float>(count: max(1, picked.count * v))
        guard let copies else {
            backend.linearForward(head, y: out.pointer, x: sel.pointer, xBF16: nil, rows: picked.count, accumulate: false,
                                  scratch: scratch)
            return Logits(values: out, vocabSize: v, rows: ranges)
        }
        backend.linearForward(rowWeights: picked.map { copies[$0]["lm_head"]?.weight ?? lmHead }, y: out.pointer, x: sel.pointer,
                              scratch: scratch)
        return Logits(values: out, vocabSize: v, rows: ranges)
    }

    /// Teacher-forced logits [T, V] of `decoderInput` (starting with the decoder start id) given `source`.
    public func logits(source: [Int], decoderInput: [Int]) throws -> [[Float]] {
        let cache = try encode([source], capacity: decoderInput.count)[0]
        let l = try decode([(decoderInput, cache)], logits: .all)
        return (0..<decoderInput.count).map { Array(l.row($0)) }
    }
}
