import FinchCore
import FinchLoRA
import FinchQuant
import Foundation

// Dimension letters: N decoder rows (packed), M encoder rows (packed), C d_model, I inner width,
// F d_ff, V vocabulary.

/// Training: the encoder and decoder forward with saved activations (or only each block's input,
/// under gradient checkpointing), the loss on the decoder's rows, and backward through both
/// stacks into the active adapter's gradients; cross-attention carries the decoder's gradient
/// into the encoder.
extension T5Model: TrainableModel {
    /// A batch packed: encoder tokens and each source's rows, decoder inputs and each target's
    /// rows, and the decoder rows' targets.
    struct PackedPairs {
        var source: [Int] = [], sourceRanges: [Range<Int>] = []
        var decoder: [Int] = [], decoderRanges: [Range<Int>] = []
        var targets: [Int32] = []
    }

    func pack(_ batch: [TrainingSequence]) throws -> PackedPairs {
        var p = PackedPairs()
        for (i, s) in batch.enumerated() {
            guard let src = s.source, !src.isEmpty else {
                throw ModelError.badTrainingSequence(index: i, reason: "no source tokens: T5 is an encoder-decoder model and trains on (source, target) pairs")
            }
            guard s.tokens.count >= 2, s.labels.count == s.tokens.count else {
                throw ModelError.badTrainingSequence(index: i, reason: "needs the decoder start id and at least one target token, with one label per token")
            }
            for t in src + s.tokens where t < 0 || Int(t) >= config.vocabSize {
                throw ModelError.tokenOutOfVocabulary(token: Int(t), vocab: config.vocabSize, place: "in training pair \(i)")
            }
            p.sourceRanges.append(p.source.count..<(p.source.count + src.count))
            p.source += src.map(Int.init)
            let rows = s.tokens.count - 1   // the last token is only a target
            p.decoderRanges.append(p.decoder.count..<(p.decoder.count + rows))
            p.decoder += s.tokens.dropLast().map(Int.init)
            p.targets += s.labels.dropFirst()
        }
        return p
    }

    /// The decoder over the batch's packed rows after the encoder (whose output is in `w`): the
    /// final-normed (and rescaled) output in `w.decoderOutput`, the last block's output and the
    /// final norm's statistics in `w.decoderStream` and `w.decoderRstd`, each block's buffers (or,
    /// under checkpointing, its input) kept in `w`.
    func runDecoder(_ p: PackedPairs, segments: [T5SelfSegment], in w: T5Workspace, context: PassContext) throws {
        let n = p.decoder.count, c = config.dModel
        let y = w.decoderStream
        try embed(p.decoder, into: y.pointer, table: decoderEmbedding)
        for (li, block) in decoder.enumerated() {
            if w.checkpointing { w.decoderInputs[li].pointer.update(from: y.pointer, count: n * c) }
            blockForward(block, layer: li, x: y.pointer, rows: n, selfSegments: segments, causal: true,
                         cross: .compute(encoderOutput: w.encoderOutput.pointer, rows: p.source.count, ranges: p.sourceRanges),
                         acts: w.acts(decoder: true, layer: li), context: context)
        }
        norm(w.decoderOutput.pointer, rstd: w.decoderRstd.pointer, y.pointer, decoderFinalNorm, rows: n)
        if let s = outputScale { backend.scale(w.decoderOutput.pointer, count: n * c, by: s) }
    }

    /// A training workspace for a batch of `rows` decoder and `sourceRows` encoder rows.
    func trainingWorkspace(rows n: Int, sourceRows m: Int, checkpointing: Bool) -> T5Workspace {
        workspace(rows: n, sourceRows: m, mode: .training(checkpointing: checkpointing))
    }

    public func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions) throws -> LossSum {
        let p = try pack(batch)
        let n = p.decoder.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        let count = CrossEntropy.countTargets(p.targets, rows: n)
        if count == 0 { return LossSum() }
        var loss = LossSum()
        try trainingPass(p, options: options) { dOut, xn in
            let l = try p.targets.withUnsafeBufferPointer { t in
                try backend.crossEntropyForwardBackward(dx: dOut, x: xn, head: head, targets: t.baseAddress!, rows: n,
                                                       scale: options.lossScale ?? 1 / Float(count), losses: nil,
                                                       headGrad: activeModuleCopies["lm_head"]?.grad?.pointer, scratch: scratch)
            }
            loss = LossSum(sum: l.sum, count: l.count)
        }
        return loss
    }

    public func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions,
                                objective: SequenceObjective) throws -> SequenceLogProbs {
        let p = try pack(batch)
        try CrossEntropy.validate(targets: p.targets, rows: p.decoder.count, vocab: config.vocabSize)
        var scores = SequenceLogProbs()
        try trainingPass(p, options: options) { dOut, xn in
            scores = try SequenceLogProbs.headBackward(dx: dOut, x: xn, head: head, targets: p.targets, sequences: p.decoderRanges,
                                                       backend: backend, scratch: scratch, objective: objective,
                                                       headGrad: activeModuleCopies["lm_head"]?.grad?.pointer)
        }
        return scores
    }

    /// Both stacks forward, `head` (which writes dOut [N, C] = ∂loss/∂(the decoder's final output)
    /// from that output [N, C]; dOut is zeroed first), and backward through both stacks.
    private func trainingPass(_ p: PackedPairs, options: TrainingPassOptions,
                              head: (_ dOut: UnsafeMutablePointer<Float>, _ xn: UnsafePointer<Float>) throws -> Void) throws {
        let n = p.decoder.count, m = p.source.count, c = config.dModel
        let context = PassContext(backend: backend, dropoutKey: options.dropoutKey)
        let w = trainingWorkspace(rows: n, sourceRows: m, checkpointing: options.checkpointing)

        // Forward.
        let encSegments = try runEncoder(tokens: p.source, ranges: p.sourceRanges, in: w, context: context)
        let decSegments = selfSegments(p.decoderRanges, decoder: true)
        try runDecoder(p, segments: decSegments, in: w, context: context)

        // Loss and the LM head's backward (chunked), then the decoder's final norm (and rescale).
        let dOut = w.dOutput, dy = w.dDecoder
        dOut.pointer.update(repeating: 0, count: n * c)   // the loss, the norms and cross-attention accumulate
        dy.pointer.update(repeating: 0, count: n * c)
        try head(dOut.pointer, w.decoderOutput.pointer)
        if let s = outputScale { backend.scale(dOut.pointer, count: n * c, by: s) }
        backend.rmsNormBackward(dx: dy.pointer, dweight: nil, dout: dOut.pointer, x: w.decoderStream.pointer, weight: decoderFinalNorm.pointer,
                         rstd: w.decoderRstd.pointer, rows: n, channels: c)

        // Decoder blocks, last to first (under checkpointing each forward is repeated first, in the
        // decoder's stream, which the final norm no longer needs); the encoder output's gradient
        // gathers from every cross-attention.
        let dEnc = w.dEncoderOutput
        dEnc.pointer.update(repeating: 0, count: m * c)
        let crossKeys = T5CrossKeys.compute(encoderOutput: w.encoderOutput.pointer, rows: m, ranges: p.sourceRanges)
        for li in stride(from: decoder.count - 1, through: 0, by: -1) {
            let acts = w.acts(decoder: true, layer: li)
            if w.checkpointing {
                w.decoderStream.pointer.update(from: w.decoderInputs[li].pointer, count: n * c)
                blockForward(decoder[li], layer: li, x: w.decoderStream.pointer, rows: n, selfSegments: decSegments, causal: true,
                             cross: crossKeys, acts: acts, context: context)
            }
            blockBackward(decoder[li], acts: acts, rows: n, dx: dy.pointer, selfSegments: decSegments, causal: true,
                          cross: (UnsafePointer(w.encoderOutput.pointer), m, p.sourceRanges, dEnc.pointer), buffers: w.back,
                          context: context)
        }

        // A trained decoder embedding (modules_to_save): each row's gradient into its token's row (dy is now
        // ∂loss/∂(the decoder's embedded rows)).
        if let g = activeModuleCopies["decoder.embed_tokens"]?.grad { Self.scatter(dy.pointer, tokens: p.decoder, into: g, columns: c) }

        // The encoder's final norm, then its blocks.
        let dx = w.dEncoder
        dx.pointer.update(repeating: 0, count: m * c)
        backend.rmsNormBackward(dx: dx.pointer, dweight: nil, dout: dEnc.pointer, x: w.encoderStream.pointer, weight: encoderFinalNorm.pointer,
                         rstd: w.encoderRstd.pointer, rows: m, channels: c)
        for li in stride(from: encoder.count - 1, through: 0, by: -1) {
            let acts = w.acts(decoder: false, layer: li)
            if w.checkpointing {
                w.encoderStream.pointer.update(from: w.encoderInputs[li].pointer, count: m * c)
                blockForward(encoder[li], layer: li, x: w.encoderStream.pointer, rows: m, selfSegments: encSegments, causal: false,
                             cross: nil, acts: acts, context: context)
            }
            blockBackward(encoder[li], acts: acts, rows: m, dx: dx.pointer, selfSegments: encSegments, causal: false, cross: nil,
                          buffers: w.back, context: context)
        }
        if let g = activeModuleCopies["encoder.embed_tokens"]?.grad { Self.scatter(dx.pointer, tokens: p.source, into: g, columns: c) }
        activeTokenRows?.gatherGradient()   // trainable tokens: their rows of both stacks' (and a tied head's) gradient
    }

    /// Adds each row of `rows` [N, C] to the row of `grad` [V, C] its token names.
    static func scatter(_ rows: UnsafePointer<Float>, tokens: [Int], into grad: Buffer<Float>, columns c: Int) {
        for (i, t) in tokens.enumerated() {
            let d = grad.pointer + t * c, src = rows + i * c
            for k in 0..<c { d[k] += src[k] }
        }
    }

    public func evaluate(_ batch: [TrainingSequence]) throws -> LossSum {
        let p = try pack(batch)
        let n = p.decoder.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        if CrossEntropy.countTargets(p.targets, rows: n) == 0 { return LossSum() }
        let loss = try evaluationPass(p, losses: nil)
        return LossSum(sum: loss.sum, count: loss.count)
    }

    public func sequenceLogProbs(_ batch: [TrainingSequence]) throws -> SequenceLogProbs {
        let p = try pack(batch)
        let n = p.decoder.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        let losses = Buffer<Float>(count: max(1, n))
        if CrossEntropy.countTargets(p.targets, rows: n) > 0 { _ = try evaluationPass(p, losses: losses.pointer) }
        return SequenceLogProbs(rowLosses: losses.pointer, targets: p.targets, sequences: p.decoderRanges)
    }

    /// Both stacks without gradients and the loss of every counted decoder row (into losses [N] when given).
    private func evaluationPass(_ p: PackedPairs, losses: UnsafeMutablePointer<Float>?) throws -> (sum: Double, count: Int) {
        let n = p.decoder.count
        let w = workspace(rows: n, sourceRows: p.source.count, mode: .inference)
        let context = PassContext(backend: backend)
        try runEncoder(tokens: p.source, ranges: p.sourceRanges, in: w, context: context)
        try runDecoder(p, segments: selfSegments(p.decoderRanges, decoder: true), in: w, context: context)
        return try p.targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForward(x: w.decoderOutput.pointer, head: head, targets: t.baseAddress!, rows: n, losses: losses,
                                           scratch: scratch)
        }
    }

    public func releaseTrainingMemory() { trainingWork = nil; work = nil }

    /// What a training pass over `rows` rows in each stack allocates (see `TrainingActivationBytes`):
    /// the workspace from the same size tables that allocate it (`T5Workspace.byteCount`); per
    /// call, the two stacks' position biases [H, N, N], the loss's logits chunk and the LoRA scratch.
    public func trainingActivationBytes(rows n: Int, checkpointing: Bool, loraRank r: Int) -> TrainingActivationBytes {
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads
        let saved = T5Workspace.byteCount(rows: n, sourceRows: n, config: config, mode: .training(checkpointing: checkpointing))
        let chunk = min(256, n)
        let transient = 4 * (2 * h * n * n + chunk * (config.vocabSize + c) + n * (max(c, f) + r + 3 * max(c, f, inner)))
        return TrainingActivationBytes(saved: saved, transient: transient)
    }

    public func loadPeakBytes(sourceBytesPerValue s: Double) -> Int {
        let values = shared.outFeatures * shared.inFeatures
        return weightBytes + 4 * values + Int(Double(values) * s)
    }

    public var trainingCaveats: [String] { config.trainingCaveats }
    /// PEFT's default for T5: the attention's q and v (self- and cross-attention, both stacks).
    public var defaultTargetModules: [String] { ["q", "v"] }
    public var linearsFanInFanOut: Bool { false }
    public var peftTaskType: String { "SEQ_2_SEQ_LM" }
    public func ggufLoRAAdapter(path: String) throws -> LoRAAdapter {
        throw ModelError.notForKind(what: "\(path): a llama.cpp LoRA adapter", kind: .encoderDecoder, advice: "a T5 adapter is a PEFT directory")
    }
}
