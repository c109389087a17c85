import FinchCore
import FinchModels
import Foundation

/// Preference training's examples: pairs (DPO, SimPO, ORPO) or unpaired completions with a label (KTO).
public enum PreferenceExamples: Sendable, Equatable {
    case pairs([PreferencePair])
    case unpaired([UnpairedExample])

    public var count: Int {
        switch self { case .pairs(let p): p.count; case .unpaired(let u): u.count }
    }
    public var isEmpty: Bool { count == 0 }

    /// The examples at `indices`, in that order.
    public subscript(_ indices: some Sequence<Int>) -> PreferenceExamples {
        switch self {
        case .pairs(let p): .pairs(indices.map { p[$0] })
        case .unpaired(let u): .unpaired(indices.map { u[$0] })
        }
    }

    /// None of the same kind.
    public var emptied: PreferenceExamples {
        switch self { case .pairs: .pairs([]); case .unpaired: .unpaired([]) }
    }

    /// A held-out share (`TrainingSplit.holdOut`): the examples kept for training, and those held out.
    public func holdOut(fraction: Double, seed: UInt64) -> (train: PreferenceExamples, eval: PreferenceExamples) {
        switch self {
        case .pairs(let p): let (t, e) = TrainingSplit.holdOut(p, fraction: fraction, seed: seed); return (.pairs(t), .pairs(e))
        case .unpaired(let u): let (t, e) = TrainingSplit.holdOut(u, fraction: fraction, seed: seed); return (.unpaired(t), .unpaired(e))
        }
    }

    /// KTO's examples with their KL completions assigned in batches of `batchSize` (pairs unchanged).
    public func assigningKLCompletions(batchSize: Int) -> PreferenceExamples {
        guard case .unpaired(var u) = self else { return self }
        UnpairedExample.assignKLCompletions(&u, batchSize: batchSize)
        return .unpaired(u)
    }

    /// Folds every token of the examples (and KTO's labels) into `h`.
    func fingerprint(into h: inout FNV1a) {
        func part(_ ids: [Int32]) { h.combine(Int32(-2)); h.combine(Int32(ids.count)); ids.forEach { h.combine($0) } }
        switch self {
        case .pairs(let pairs): for p in pairs { part(p.prompt); part(p.chosen); part(p.rejected) }
        case .unpaired(let examples):
            for e in examples { part(e.prompt); part(e.completion); h.combine(Int32(e.desirable ? -3 : -4)); part(e.klCompletion) }
        }
    }
}

/// Preference training's part of a run (`method` dpo, simpo, orpo or kto): the loss, where the
/// reference's log-probabilities come from, and the passes of a micro-batch.
///
/// The reference is the base model with the adapters switched off (no second copy of the model),
/// or, for a run that continues an SFT adapter (`ref_adapter`), that adapter as it was loaded; or
/// nothing (`reference_free`: log π_ref = 0). Chosen and rejected answers go through the model in
/// one packed pass, chosen first, as TRL concatenates them. KTO scores a batch's completions, and
/// (loss_type kto) its mismatched completions for the KL estimate without gradients.
public final class PreferenceObjective: @unchecked Sendable {
    public let method: TrainingMethod
    /// The loss of pairs (nil for KTO).
    public let loss: (any PairLoss)?
    /// KTO's loss (nil for the pair methods).
    public let kto: KTOLoss?
    /// No reference pass: `reference_free`, or a loss that reads none (SimPO, ORPO).
    public let referenceFree: Bool
    /// The adapter that is the reference (nil: the base, adapters off).
    public let referenceAdapter: String?
    public let maxLength: Int?
    public let truncation: TruncationMode
    /// The metrics a step logs, in TRL's names.
    public var metricNames: [String] { kto != nil ? KTOLoss.metricNames : loss!.metricNames }

    /// The objective `c` describes (`method`, `beta`, `loss_type`, `label_smoothing`, `reference_free`,
    /// `max_length`, `truncation_mode`, KTO's weights), with the reference adapter loaded under
    /// `referenceAdapter` (nil: the base).
    public init(config c: TrainingConfig, referenceAdapter: String?) {
        method = c.method
        switch c.method {
        case .simpo: loss = SimPOLoss(beta: c.beta, gamma: c.simpoGamma, labelSmoothing: c.labelSmoothing, cpoAlpha: c.cpoAlpha); kto = nil
        case .orpo: loss = ORPOLoss(beta: c.beta); kto = nil
        case .kto:
            loss = nil
            kto = KTOLoss(beta: c.beta, lossType: c.ktoLossType, desirableWeight: c.desirableWeight, undesirableWeight: c.undesirableWeight)
        case .dpo, .sft:
            loss = DPOLoss(beta: c.beta, lossType: c.dpoLossType, labelSmoothing: c.labelSmoothing, discopopTau: c.discopopTau); kto = nil
        }
        referenceFree = c.referenceFree || !(loss?.usesReference ?? true)
        self.referenceAdapter = referenceAdapter
        maxLength = c.maxLength
        truncation = c.truncationMode
    }

    /// The rows example `i` puts through the model in a pass: both answers of a pair; the longer of
    /// a KTO example's sequence and its KL sequence (they go through in separate passes).
    func rows(_ examples: PreferenceExamples, _ i: Int) -> Int {
        switch examples {
        case .pairs(let p): return rows(p[i])
        case .unpaired(let u):
            let e = u[i]
            return max(e.sequence(maxLength: maxLength).tokens.count, kto!.usesKL ? e.klSequence(maxLength: maxLength).tokens.count : 0)
        }
    }

    /// The packed rows of a pair (both answers, truncated).
    func rows(_ pair: PreferencePair) -> Int {
        let s = pair.sequences(maxLength: maxLength, truncation: truncation)
        let decoder = s.chosen.tokens.count + s.rejected.tokens.count
        return pair.decoderStart == nil ? decoder : max(decoder, 2 * pair.prompt.count)   // an encoder-decoder's larger stack
    }

    /// The sequences of a micro-batch (all chosen answers, then all rejected) and their completion lengths.
    func sequences(_ pairs: [PreferencePair]) -> (sequences: [TrainingSequence], chosenTokens: [Int], rejectedTokens: [Int]) {
        var chosen: [TrainingSequence] = [], rejected: [TrainingSequence] = [], ct: [Int] = [], rt: [Int] = []
        for p in pairs {
            let s = p.sequences(maxLength: maxLength, truncation: truncation, labelChosenPrompt: loss!.labelsChosenPrompt)
            chosen.append(s.chosen); rejected.append(s.rejected); ct.append(s.chosenTokens); rt.append(s.rejectedTokens)
        }
        return (chosen + rejected, ct, rt)
    }

    /// The reference's log-probabilities of the pairs' answers (precomputed ones when the pairs
    /// carry them): one pass without gradients, the trained adapter switched off (or the reference
    /// adapter on) and back.
    func referenceLogProbs(model: any TrainableModel, pairs: [PreferencePair], sequences: [TrainingSequence],
                           trained: String?) throws -> (chosen: [Double], rejected: [Double]) {
        let n = pairs.count
        if referenceFree { return ([Double](repeating: 0, count: n), [Double](repeating: 0, count: n)) }
        if pairs.allSatisfy({ $0.referenceChosen != nil && $0.referenceRejected != nil }) {
            return (pairs.map { $0.referenceChosen! }, pairs.map { $0.referenceRejected! })
        }
        model.setActiveAdapter(referenceAdapter)
        defer { model.setActiveAdapter(trained) }
        let lp = try model.sequenceLogProbs(sequences)
        return (Array(lp.sums[..<n]), Array(lp.sums[n...]))
    }

    /// A KTO batch's sequences and, with the KL estimate, its mismatched ones.
    func sequences(_ examples: [UnpairedExample]) -> (sequences: [TrainingSequence], kl: [TrainingSequence]) {
        (examples.map { $0.sequence(maxLength: maxLength) }, kto!.usesKL ? examples.map { $0.klSequence(maxLength: maxLength) } : [])
    }

    /// The reference's log-probabilities of a KTO batch's completions and KL completions
    /// (precomputed ones when the examples carry them): two passes without gradients.
    func referenceLogProbs(model: any TrainableModel, examples: [UnpairedExample], sequences: [TrainingSequence], kl: [TrainingSequence],
                           trained: String?) throws -> (completions: [Double], kl: [Double]) {
        if examples.allSatisfy({ $0.referenceLogProb != nil && (kl.isEmpty || $0.referenceKL != nil) }) {
            return (examples.map { $0.referenceLogProb! }, kl.isEmpty ? [] : examples.map { $0.referenceKL! })
        }
        model.setActiveAdapter(referenceAdapter)
        defer { model.setActiveAdapter(trained) }
        return (try model.sequenceLogProbs(sequences).sums, kl.isEmpty ? [] : try model.sequenceLogProbs(kl).sums)
    }

    /// What a KTO batch needs before the policy's pass over its completions: their sequences, the
    /// reference's log-probabilities of them, and the batch's KL estimate (the policy's and the
    /// reference's passes over the mismatched completions, without gradients).
    func ktoPasses(model: any TrainableModel, batch: [UnpairedExample], trained: String?) throws
        -> (sequences: [TrainingSequence], reference: [Double], kl: Double) {
        let (seqs, klSeqs) = sequences(batch)
        let ref = try referenceLogProbs(model: model, examples: batch, sequences: seqs, kl: klSeqs, trained: trained)
        let kl = kto!.klEstimate(policy: klSeqs.isEmpty ? [] : try model.sequenceLogProbs(klSeqs).sums, reference: ref.kl)
        return (seqs, ref.completions, kl)
    }

    /// Every example's reference log-probabilities, computed once before training in batches of
    /// `batchSize` (`precompute_ref_log_probs`).
    func precomputeReference(model: any TrainableModel, examples: inout PreferenceExamples, batchSize: Int, trained: String) throws {
        switch examples {
        case .pairs(var pairs):
            for r in stride(from: 0, to: pairs.count, by: batchSize).map({ $0..<min($0 + batchSize, pairs.count) }) {
                var batch = Array(pairs[r])
                for k in batch.indices { batch[k].referenceChosen = nil; batch[k].referenceRejected = nil }
                let ref = try referenceLogProbs(model: model, pairs: batch, sequences: sequences(batch).sequences, trained: trained)
                for (k, j) in r.enumerated() { pairs[j].referenceChosen = ref.chosen[k]; pairs[j].referenceRejected = ref.rejected[k] }
            }
            examples = .pairs(pairs)
        case .unpaired(var all):
            for r in stride(from: 0, to: all.count, by: batchSize).map({ $0..<min($0 + batchSize, all.count) }) {
                var batch = Array(all[r])
                for k in batch.indices { batch[k].referenceLogProb = nil; batch[k].referenceKL = nil }
                let (seqs, kl) = sequences(batch)
                let ref = try referenceLogProbs(model: model, examples: batch, sequences: seqs, kl: kl, trained: trained)
                for (k, j) in r.enumerated() { all[j].referenceLogProb = ref.completions[k]; all[j].referenceKL = kl.isEmpty ? nil : ref.kl[k] }
            }
            examples = .unpaired(all)
        }
    }

    /// What a micro-batch did: its mean loss and TRL's metrics.
    public struct MicroBatch: Sendable {
        public var loss: Double
        /// Pairs, or KTO's examples.
        public var examples: Int
        /// Each metric's sum and weight (per pair for pairs; one per micro-batch for KTO, as TRL averages).
        public var metrics: [String: MetricSum]
        public var tokens: Int
    }

    /// Pair metric sums, each weighed by the pairs.
    static func perPair(_ sums: [String: Double], pairs: Int) -> [String: MetricSum] {
        sums.mapValues { MetricSum(sum: $0, count: Double(pairs)) }
    }

    /// One micro-batch of training: the reference pass, then forward and backward under the loss,
    /// adding `scale` · ∂(mean loss)/∂θ to the trained adapter's gradients.
    func train(model: any TrainableModel, examples: PreferenceExamples, scale: Double, options: TrainingPassOptions,
               trained: String) throws -> MicroBatch {
        switch examples {
        case .pairs(let pairs):
            let (seqs, ct, rt) = sequences(pairs)
            let ref = try referenceLogProbs(model: model, pairs: pairs, sequences: seqs, trained: trained)
            var outcome: PairLossOutcome?
            var options = options
            options.auxLossScale = Float(scale)   // TRL adds aux_loss_coef × the load-balancing loss to the mean loss
            let scores = try model.forwardBackward(seqs, options: options) { lp in
                let (o, gradient) = loss!.outcome(lp, reference: ref, chosenTokens: ct, rejectedTokens: rt)
                outcome = o
                switch gradient {
                case .perSequence(let g): return .perSequence(g.map { $0 * scale })
                case .perRow(let g): return .perRow(g.map { $0 * scale })
                }
            }
            return MicroBatch(loss: outcome!.loss + scores.auxiliaryLoss, examples: pairs.count,
                              metrics: Self.perPair(outcome!.metricSums, pairs: pairs.count), tokens: seqs.reduce(0) { $0 + $1.tokens.count })
        case .unpaired(let batch):
            let kto = kto!
            let (seqs, ref, kl) = try ktoPasses(model: model, batch: batch, trained: trained)
            var outcome: (loss: Double, gradient: [Double], metrics: [String: MetricSum])?
            var options = options
            options.auxLossScale = Float(scale)
            let scores = try model.forwardBackward(seqs, options: options) { lp in
                outcome = kto.evaluate(logps: lp.sums, reference: ref, desirable: batch.map(\.desirable), kl: kl)
                return .perSequence(outcome!.gradient.map { $0 * scale })
            }
            return MicroBatch(loss: outcome!.loss + scores.auxiliaryLoss, examples: batch.count, metrics: outcome!.metrics,
                              tokens: seqs.reduce(0) { $0 + $1.tokens.count })
        }
    }

    /// One batch of evaluation (no gradients): the policy's (the `trained` adapter, or the base when
    /// nil) and the reference's passes: the mean loss and TRL's metrics.
    public func evaluate(model: any TrainableModel, examples: PreferenceExamples, trained: String?) throws -> MicroBatch {
        switch examples {
        case .pairs(let pairs):
            let (seqs, ct, rt) = sequences(pairs)
            let ref = try referenceLogProbs(model: model, pairs: pairs, sequences: seqs, trained: trained)
            let (o, _) = loss!.outcome(try model.sequenceLogProbs(seqs), reference: ref, chosenTokens: ct, rejectedTokens: rt)
            return MicroBatch(loss: o.loss, examples: pairs.count, metrics: Self.perPair(o.metricSums, pairs: pairs.count),
                              tokens: seqs.reduce(0) { $0 + $1.tokens.count })
        case .unpaired(let batch):
            let (seqs, ref, kl) = try ktoPasses(model: model, batch: batch, trained: trained)
            let o = kto!.evaluate(logps: try model.sequenceLogProbs(seqs).sums, reference: ref, desirable: batch.map(\.desirable), kl: kl)
            return MicroBatch(loss: o.loss, examples: batch.count, metrics: o.metrics, tokens: seqs.reduce(0) { $0 + $1.tokens.count })
        }
    }
}
