import Foundation

// Dimension letters: P pairs of a micro-batch.

/// The training objective of a run (`method`): supervised fine-tuning, or preference training.
public enum TrainingMethod: String, SettingChoice, Sendable {
    case sft
    /// Direct Preference Optimization (Rafailov et al., 2023), as TRL's `DPOTrainer` computes it.
    case dpo

    /// Whether the data are preference pairs.
    public var isPreference: Bool { self != .sft }
}

/// TRL's DPO `loss_type`s Finch implements (TRL's `DPOConfig.loss_type`).
public enum DPOLossType: String, SettingChoice, Sendable {
    /// −log σ(β·Δ), Δ = (log π/π_ref)(chosen) − (log π/π_ref)(rejected).
    case sigmoid
    /// max(0, 1 − β·Δ) (SLiC).
    case hinge
    /// (Δ̄ − 1/(2β))², Δ̄ the difference of the length-averaged log-ratios (IPO, as TRL normalizes it).
    case ipo
    /// (−(1−ε)·log σ(β·Δ) + ε·log σ(−β·Δ)) / (1 − 2ε), ε = `label_smoothing` (robust DPO).
    case robust
}

/// The policy's and the reference's summed log-probabilities of a micro-batch's pairs, and each
/// completion's length in tokens (TRL's `completion_mask` sums, IPO's normalization).
public struct PairLogProbs: Sendable, Equatable {
    /// [P] log π(chosen | prompt) and log π(rejected | prompt).
    public var chosen: [Double]
    public var rejected: [Double]
    /// [P] the same under the reference model (zeros when reference-free).
    public var referenceChosen: [Double]
    public var referenceRejected: [Double]
    /// [P] completion tokens of each chosen and rejected answer (after truncation).
    public var chosenTokens: [Int]
    public var rejectedTokens: [Int]

    public init(chosen: [Double], rejected: [Double], referenceChosen: [Double], referenceRejected: [Double],
                chosenTokens: [Int], rejectedTokens: [Int]) {
        self.chosen = chosen; self.rejected = rejected
        self.referenceChosen = referenceChosen; self.referenceRejected = referenceRejected
        self.chosenTokens = chosenTokens; self.rejectedTokens = rejectedTokens
    }

    public var count: Int { chosen.count }
}

/// DPO's loss over a micro-batch of pairs, TRL's definition (trl 1.16 `DPOTrainer._compute_loss`,
/// `f_divergence_type` reverse_kl): the mean over the pairs of the per-pair loss of `lossType`,
/// its gradient with respect to every summed log-probability, and the metrics TRL logs.
public struct DPOLoss: Sendable, Equatable {
    public var beta: Double
    public var lossType: DPOLossType
    /// ε of the robust loss (the probability that a label is flipped), in [0, 0.5).
    public var labelSmoothing: Double

    public init(beta: Double = 0.1, lossType: DPOLossType = .sigmoid, labelSmoothing: Double = 0) {
        self.beta = beta; self.lossType = lossType; self.labelSmoothing = labelSmoothing
    }

    /// A micro-batch's loss, ∂loss/∂(each policy log-probability) and metrics.
    public struct Outcome: Sendable, Equatable {
        /// The mean per-pair loss.
        public var loss: Double
        /// [P] ∂loss/∂ log π(chosen), ∂loss/∂ log π(rejected).
        public var dChosen: [Double]
        public var dRejected: [Double]
        /// Sums over the pairs of TRL's per-pair metrics (divide by the pairs for TRL's means):
        /// `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
        /// `logps/chosen`, `logps/rejected`.
        public var metricSums: [String: Double]
    }

    /// log σ(x), stable for large |x|.
    static func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }
    static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

    public func evaluate(_ s: PairLogProbs) -> Outcome {
        let p = s.count, b = beta, eps = labelSmoothing
        var loss = 0.0
        var dc = [Double](repeating: 0, count: p), dr = [Double](repeating: 0, count: p)
        var m: [String: Double] = ["rewards/chosen": 0, "rewards/rejected": 0, "rewards/accuracies": 0, "rewards/margins": 0,
                                   "logps/chosen": 0, "logps/rejected": 0]
        for i in 0..<p {
            let cr = s.chosen[i] - s.referenceChosen[i], rr = s.rejected[i] - s.referenceRejected[i]
            let delta = cr - rr
            var l: Double, dDelta = 0.0   // the pair's loss and ∂l/∂Δ (IPO sets dc / dr itself)
            switch lossType {
            case .sigmoid:
                l = -Self.logSigmoid(b * delta)
                dDelta = -b * Self.sigmoid(-b * delta)
            case .hinge:
                l = max(0, 1 - b * delta)
                dDelta = 1 - b * delta > 0 ? -b : 0
            case .ipo:
                let nc = Double(max(1, s.chosenTokens[i])), nr = Double(max(1, s.rejectedTokens[i]))
                let d = cr / nc - rr / nr - 1 / (2 * b)
                l = d * d
                dc[i] = 2 * d / nc / Double(p); dr[i] = -2 * d / nr / Double(p)
            case .robust:
                l = (-(1 - eps) * Self.logSigmoid(b * delta) + eps * Self.logSigmoid(-b * delta)) / (1 - 2 * eps)
                dDelta = (-(1 - eps) * b * Self.sigmoid(-b * delta) - eps * b * Self.sigmoid(b * delta)) / (1 - 2 * eps)
            }
            if lossType != .ipo { dc[i] = dDelta / Double(p); dr[i] = -dDelta / Double(p) }
            loss += l
            let rc = b * cr, rj = b * rr
            m["rewards/chosen"]! += rc
            m["rewards/rejected"]! += rj
            m["rewards/accuracies"]! += rc > rj ? 1 : 0
            m["rewards/margins"]! += rc - rj
            m["logps/chosen"]! += s.chosen[i]
            m["logps/rejected"]! += s.rejected[i]
        }
        return Outcome(loss: p > 0 ? loss / Double(p) : 0, dChosen: dc, dRejected: dr, metricSums: m)
    }
}
