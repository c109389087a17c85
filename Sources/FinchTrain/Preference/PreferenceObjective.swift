import FinchModels
import Foundation

/// Preference training's part of a run (`method` dpo, simpo or orpo): the loss, where the reference's
/// log-probabilities come from, and the passes of a micro-batch of pairs.
///
/// The reference is the base model with the adapters switched off (no second copy of the model),
/// or, for a run that continues an SFT adapter (`ref_adapter`), that adapter as it was loaded; or
/// nothing (`reference_free`: log π_ref = 0). Chosen and rejected answers go through the model in
/// one packed pass, chosen first, as TRL concatenates them.
public final class PreferenceObjective: @unchecked Sendable {
    public let method: TrainingMethod
    public let loss: any PairLoss
    /// No reference pass: `reference_free`, or a loss that reads none (SimPO).
    public let referenceFree: Bool
    /// The adapter that is the reference (nil: the base, adapters off).
    public let referenceAdapter: String?
    public let maxLength: Int?
    public let truncation: TruncationMode
    /// The metrics a step logs, in TRL's names.
    public var metricNames: [String] { loss.metricNames }

    /// The objective `c` describes (`method`, `beta`, `loss_type`, `label_smoothing`, `reference_free`,
    /// `max_length`, `truncation_mode`), with the reference adapter loaded under `referenceAdapter` (nil: the base).
    public init(config c: TrainingConfig, referenceAdapter: String?) {
        method = c.method
        switch c.method {
        case .simpo: loss = SimPOLoss(beta: c.beta, gamma: c.simpoGamma, labelSmoothing: c.labelSmoothing, cpoAlpha: c.cpoAlpha)
        case .orpo: loss = ORPOLoss(beta: c.beta)
        case .dpo, .sft: loss = DPOLoss(beta: c.beta, lossType: c.lossType, labelSmoothing: c.labelSmoothing, discopopTau: c.discopopTau)
        }
        referenceFree = c.referenceFree || !loss.usesReference
        self.referenceAdapter = referenceAdapter
        maxLength = c.maxLength
        truncation = c.truncationMode
    }

    /// The packed rows of a pair (both answers, truncated).
    func rows(_ pair: PreferencePair) -> Int {
        let s = pair.sequences(maxLength: maxLength, truncation: truncation)
        return s.chosen.tokens.count + s.rejected.tokens.count
    }

    /// The sequences of a micro-batch (all chosen answers, then all rejected) and their completion lengths.
    func sequences(_ pairs: [PreferencePair]) -> (sequences: [TrainingSequence], chosenTokens: [Int], rejectedTokens: [Int]) {
        var chosen: [TrainingSequence] = [], rejected: [TrainingSequence] = [], ct: [Int] = [], rt: [Int] = []
        for p in pairs {
            let s = p.sequences(maxLength: maxLength, truncation: truncation, labelChosenPrompt: loss.labelsChosenPrompt)
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

    /// Every pair's reference log-probabilities, computed once before training in batches of
    /// `batchSize` (`precompute_ref_log_probs`).
    func precomputeReference(model: any TrainableModel, pairs: inout [PreferencePair], batchSize: Int, trained: String) throws {
        var i = 0
        while i < pairs.count {
            let r = i..<min(i + batchSize, pairs.count)
            let batch = Array(pairs[r])
            var none = batch
            for k in none.indices { none[k].referenceChosen = nil; none[k].referenceRejected = nil }
            let ref = try referenceLogProbs(model: model, pairs: none, sequences: sequences(batch).sequences, trained: trained)
            for (k, j) in r.enumerated() { pairs[j].referenceChosen = ref.chosen[k]; pairs[j].referenceRejected = ref.rejected[k] }
            i = r.upperBound
        }
    }

    /// What a micro-batch did: its mean loss and the sums of TRL's metrics over its pairs.
    public struct MicroBatch: Sendable {
        public var loss: Double
        public var pairs: Int
        public var metricSums: [String: Double]
        public var tokens: Int
    }

    /// One micro-batch of training: the reference pass, then forward and backward under the loss,
    /// adding `scale` · ∂(mean loss)/∂θ to the trained adapter's gradients.
    func train(model: any TrainableModel, pairs: [PreferencePair], scale: Double, options: TrainingPassOptions,
               trained: String) throws -> MicroBatch {
        let (seqs, ct, rt) = sequences(pairs)
        let ref = try referenceLogProbs(model: model, pairs: pairs, sequences: seqs, trained: trained)
        var outcome: PairLossOutcome?
        _ = try model.forwardBackward(seqs, options: options) { lp in
            let (o, gradient) = loss.outcome(lp, reference: ref, chosenTokens: ct, rejectedTokens: rt)
            outcome = o
            switch gradient {
            case .perSequence(let g): return .perSequence(g.map { $0 * scale })
            case .perRow(let g): return .perRow(g.map { $0 * scale })
            }
        }
        return MicroBatch(loss: outcome!.loss, pairs: pairs.count, metricSums: outcome!.metricSums, tokens: seqs.reduce(0) { $0 + $1.tokens.count })
    }

    /// One batch of evaluation (no gradients): the policy's (the `trained` adapter, or the base when
    /// nil) and the reference's passes: the mean loss and the sums of TRL's metrics over the pairs.
    public func evaluate(model: any TrainableModel, pairs: [PreferencePair], trained: String?) throws -> MicroBatch {
        let (seqs, ct, rt) = sequences(pairs)
        let ref = try referenceLogProbs(model: model, pairs: pairs, sequences: seqs, trained: trained)
        let (o, _) = loss.outcome(try model.sequenceLogProbs(seqs), reference: ref, chosenTokens: ct, rejectedTokens: rt)
        return MicroBatch(loss: o.loss, pairs: pairs.count, metricSums: o.metricSums, tokens: seqs.reduce(0) { $0 + $1.tokens.count })
    }
}
