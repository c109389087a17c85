import FinchCore
import FinchLoRA

// Dimension letters: N rows (the tokens of all sequences of a micro-batch, packed), C hidden size,
// V vocabulary, L layers.

/// Training: forward with saved activations, the loss, and backward through the frozen model
/// into the active adapter's gradients (see `LoRAHost` for adapters).
extension DecoderModel {
    /// The packed rows of a batch: tokens [N], per-row targets [N] (shifted labels), sequence ranges.
    struct PackedBatch {
        let tokens: [Int]
        let targets: [Int32]
        let sequences: [Range<Int>]
        let positions: [Int32]
    }

    func pack(_ batch: [TrainingSequence]) throws -> PackedBatch {
        var tokens: [Int] = [], labels: [Int32] = [], sequences: [Range<Int>] = [], positions: [Int32] = []
        for (i, s) in batch.enumerated() {
            guard !s.tokens.isEmpty else { throw ModelError.emptySequence(what: "training sequence \(i)") }
            guard s.labels.count == s.tokens.count else {
                throw ModelError.badTrainingSequence(index: i, reason: "\(s.tokens.count) tokens but \(s.labels.count) labels; give one label per token")
            }
            for t in s.tokens where t < 0 || Int(t) >= spec.vocabSize {
                throw ModelError.tokenOutOfVocabulary(token: Int(t), vocab: spec.vocabSize, place: "in training sequence \(i)")
            }
            sequences.append(tokens.count..<(tokens.count + s.tokens.count))
            tokens += s.tokens.map(Int.init)
            labels += s.labels
            positions += (0..<s.tokens.count).map(Int32.init)
        }
        return PackedBatch(tokens: tokens, targets: CrossEntropy.shiftedTargets(labels: labels, sequences: sequences),
                           sequences: sequences, positions: positions)
    }

    /// A workspace for `rows` rows, reusing the last one when it fits.
    func trainingWorkspace(rows: Int, checkpointing: Bool) -> DecoderWorkspace {
        let mode = DecoderWorkspace.Mode.training(checkpointing: checkpointing)
        if let w = trainingWork, w.rows >= rows, w.mode == mode { return w }
        trainingWork = nil   // release before allocating the next
        let w = DecoderWorkspace(rows: rows, spec: spec, mode: mode)
        trainingWork = w
        return w
    }

    public func releaseTrainingMemory() { trainingWork = nil; work = nil }

    public func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions) throws -> LossSum {
        let p = try pack(batch)
        let n = p.tokens.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: spec.vocabSize)
        let count = CrossEntropy.countTargets(p.targets, rows: n)
        if count == 0 { return LossSum() }
        var loss = LossSum()
        let aux = try trainingPass(p, options: options) { dxn, xn in
            let l = try p.targets.withUnsafeBufferPointer { t in
                try backend.crossEntropyForwardBackward(dx: dxn, x: xn, head: lmHead, targets: t.baseAddress!, rows: n,
                                                       scale: options.lossScale ?? 1 / Float(count), losses: nil,
                                                       headGrad: activeModuleCopies[names.head]?.grad?.pointer, scratch: scratch)
            }
            loss = LossSum(sum: l.sum, count: l.count)
        }
        // The mean is transformers' loss: cross-entropy + router_aux_loss_coef · the load-balancing loss.
        loss.sum += aux * Double(loss.count)
        return loss
    }

    public func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions,
                                objective: SequenceObjective) throws -> SequenceLogProbs {
        let p = try pack(batch)
        try CrossEntropy.validate(targets: p.targets, rows: p.tokens.count, vocab: spec.vocabSize)
        var scores = SequenceLogProbs()
        let aux = try trainingPass(p, options: options) { dxn, xn in
            scores = try SequenceLogProbs.headBackward(dx: dxn, x: xn, head: lmHead, targets: p.targets, sequences: p.sequences,
                                                       backend: backend, scratch: scratch, objective: objective,
                                                       headGrad: activeModuleCopies[names.head]?.grad?.pointer)
        }
        scores.auxiliaryLoss = aux
        return scores
    }

    /// Forward with saved activations (or recomputed per block under checkpointing), the final
    /// norm, `head` (which writes dxn [N, C] = ∂loss/∂(final norm's output) from that output [N, C];
    /// dxn is zeroed first), and backward through the blocks into the active adapter's gradients.
    /// A mixture of experts with `auxLossCoef` adds coef × the load-balancing loss of every layer's
    /// routing (as transformers adds it to each micro-batch's loss; its gradient through the routers);
    /// returns that term (0 without).
    private func trainingPass(_ p: PackedBatch, options: TrainingPassOptions,
                              head: (_ dxn: UnsafeMutablePointer<Float>, _ xn: UnsafePointer<Float>) throws -> Void) throws -> Double {
        let n = p.tokens.count, c = spec.hiddenSize, checkpointing = options.checkpointing
        let w = trainingWorkspace(rows: n, checkpointing: checkpointing)
        let context = PassContext(backend: backend, dropoutKey: options.dropoutKey)
        let tables = RotaryTables(spec: spec, positions: p.positions)

        // Forward, keeping each block's input (and, without checkpointing, its activations).
        try embedRows(p.tokens, positions: p.positions, into: w.residual[0].pointer)
        let auxCoef = spec.moe?.auxLossCoef
        var tally = spec.moe.map { MoERouting.LoadBalancingTally(experts: $0.experts) }
        for li in 0..<layers.count {
            let acts = w.layers[checkpointing ? 0 : li]
            blockForward(li, x: w.residual[li].pointer, out: w.residual[li + 1].pointer,
                         acts: acts, w: w, rows: n, attention: .packed(p.sequences),
                         rope: tables[li], context: context)
            if auxCoef != nil, layers[li].moe != nil, let routes = acts.moe?.routes { tally?.add(routes) }
        }
        var aux = 0.0, auxGradient: [Float]?
        if let auxCoef, let tally {
            aux = Double(auxCoef) * tally.loss
            auxGradient = tally.dProbabilities(scale: auxCoef * options.auxLossScale)
        }

        // Final norm, LM head, loss and its backward (chunked: [N, V] logits never exist at once).
        let xL = w.residual[layers.count].pointer
        normForward(out: w.finalNormed.pointer, stats: w.finalRstd.pointer, x: xL, weight: finalNorm, bias: finalNormBias,
                    rows: n)
        w.dxn.pointer.update(repeating: 0, count: n * c)
        try head(w.dxn.pointer, w.finalNormed.pointer)
        w.dx.pointer.update(repeating: 0, count: n * c)
        normBackward(dx: w.dx.pointer, dout: w.dxn.pointer, x: xL, weight: finalNorm, stats: w.finalRstd.pointer, rows: n)

        // Backward through the blocks, last to first; dx carries ∂loss/∂(residual stream).
        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            let acts = w.layers[checkpointing ? 0 : li]
            if checkpointing {
                // Recompute the block's activations (the saved input stays; its output is not needed).
                blockForward(li, x: w.residual[li].pointer, out: w.dxn.pointer, acts: acts, w: w, rows: n,
                             attention: .packed(p.sequences), rope: tables[li], context: context, recompute: true)
            }
            blockBackward(li, x: w.residual[li].pointer, acts: acts, w: w, rows: n, sequences: p.sequences,
                          rope: tables[li], context: context, auxGradient: auxGradient)
        }

        // A trained embedding (modules_to_save): each row's gradient into its token's row, scaled as
        // the forward scaled the rows (dx is now ∂loss/∂(the embedded rows)).
        if let e = activeModuleCopies[names.embedding], let g = e.grad {
            let s = embeddingScale ?? 1
            for (i, t) in p.tokens.enumerated() {
                let d = g.pointer + t * c, src = w.dx.pointer + i * c
                for k in 0..<c { d[k] += s * src[k] }
            }
        }
        activeTokenRows?.gatherGradient()   // trainable tokens: their rows of the embedding's (and a tied head's) gradient
        return aux
    }

    public func evaluate(_ batch: [TrainingSequence]) throws -> LossSum {
        let p = try pack(batch)
        try CrossEntropy.validate(targets: p.targets, rows: p.tokens.count, vocab: spec.vocabSize)
        if CrossEntropy.countTargets(p.targets, rows: p.tokens.count) == 0 { return LossSum() }
        let loss = try evaluationPass(p, losses: nil)
        // As transformers' evaluation loss, with the load-balancing term when the model adds it.
        return LossSum(sum: loss.sum + loss.aux * Double(loss.count), count: loss.count)
    }

    public func sequenceLogProbs(_ batch: [TrainingSequence]) throws -> SequenceLogProbs {
        let p = try pack(batch)
        let n = p.tokens.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: spec.vocabSize)
        let losses = Buffer<Float>(count: n)
        if CrossEntropy.countTargets(p.targets, rows: n) > 0 { _ = try evaluationPass(p, losses: losses.pointer) }
        return SequenceLogProbs(rowLosses: losses.pointer, targets: p.targets, sequences: p.sequences)
    }

    /// The forward without gradients (adapters' dropout off) and the loss of every counted row
    /// (written to losses [N] when given).
    /// The routing of every sparse layer of the model's forward over `batch` (packed), in layer order: what
    /// transformers' `output_router_logits` returns, as probabilities and choices.
    func routes(_ batch: [TrainingSequence]) throws -> [MoERouting.Routes] {
        let p = try pack(batch)
        var out: [MoERouting.Routes] = []
        _ = try evaluationPass(p, losses: nil, routes: { out.append($0) })
        return out
    }

    /// With `auxLossCoef`, `aux` is coef × the load-balancing loss of the pass (else 0); `routes` sees each
    /// sparse layer's routing.
    private func evaluationPass(_ p: PackedBatch, losses: UnsafeMutablePointer<Float>?,
                                routes: ((MoERouting.Routes) -> Void)? = nil) throws -> (sum: Double, count: Int, aux: Double) {
        let n = p.tokens.count
        // Any training workspace holds what a forward needs (a pass between training steps reuses it).
        let w = trainingWork.flatMap { $0.rows >= n ? $0 : nil } ?? trainingWorkspace(rows: n, checkpointing: true)
        let tables = RotaryTables(spec: spec, positions: p.positions)
        try embedRows(p.tokens, positions: p.positions, into: w.residual[0].pointer)
        var tally = spec.moe?.auxLossCoef == nil ? nil : spec.moe.map { MoERouting.LoadBalancingTally(experts: $0.experts) }
        for li in 0..<layers.count {
            blockForward(li, x: w.residual[li].pointer, out: w.residual[li + 1].pointer, acts: w.layers[0],
                         w: w, rows: n, attention: .packed(p.sequences), rope: tables[li], context: PassContext(backend: backend))
            if layers[li].moe != nil, let r = w.layers[0].moe?.routes { tally?.add(r); routes?(r) }
        }
        let aux = tally.map { Double(spec.moe!.auxLossCoef!) * $0.loss } ?? 0
        normForward(out: w.finalNormed.pointer, stats: nil, x: w.residual[layers.count].pointer, weight: finalNorm,
                    bias: finalNormBias, rows: n)
        let l = try p.targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForward(x: w.finalNormed.pointer, head: lmHead, targets: t.baseAddress!, rows: n, losses: losses,
                                           scratch: scratch)
        }
        return (l.sum, l.count, aux)
    }
}
