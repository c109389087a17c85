import Foundation

// Dimension letters: B examples of a micro-batch.

/// TRL's KTO `loss_type`s (`KTOConfig.loss_type`).
public enum KTOLossType: String, SettingChoice, Sendable {
    /// KTO (Ethayarajh et al., 2024, eq. 7): desirable 1 − σ(β(r − z)), undesirable 1 − σ(β(z − r)),
    /// r the log-ratio of the completion, z the batch's KL estimate.
    case kto
    /// APO-zero's unpaired form: desirable 1 − σ(β·r), undesirable σ(β·r); no KL estimate.
    case apoZeroUnpaired = "apo_zero_unpaired"
}

/// A metric of a micro-batch as TRL logs it: a value and the weight it carries in the step's mean
/// (TRL appends one value per micro-batch and averages the list; pair metrics carry one per pair).
public struct MetricSum: Sendable, Equatable {
    public var sum: Double
    public var count: Double
    public init(sum: Double, count: Double) { self.sum = sum; self.count = count }
    public var mean: Double { sum / count }
    /// Two micro-batches' (or batches') share of a metric together.
    public static func + (a: MetricSum, b: MetricSum) -> MetricSum { MetricSum(sum: a.sum + b.sum, count: a.count + b.count) }
}

/// KTO's loss over a micro-batch of unpaired completions, TRL 1.16's definition
/// (`KTOTrainer._compute_loss`): per completion a desirable or undesirable loss of its log-ratio
/// r = log π(y|x) − log π_ref(y|x) and of the batch's KL estimate z (the mean over the batch of
/// log π(y'|x) − log π_ref(y'|x) for mismatched completions y', clamped at 0, no gradient), weighted
/// by `desirableWeight` / `undesirableWeight`; the mean over the batch.
public struct KTOLoss: Sendable, Equatable {
    public var beta: Double
    public var lossType: KTOLossType
    public var desirableWeight: Double
    public var undesirableWeight: Double

    public init(beta: Double = 0.1, lossType: KTOLossType = .kto, desirableWeight: Double = 1, undesirableWeight: Double = 1) {
        self.beta = beta; self.lossType = lossType; self.desirableWeight = desirableWeight; self.undesirableWeight = undesirableWeight
    }

    /// Whether the loss reads the KL estimate (then every batch also scores mismatched completions).
    public var usesKL: Bool { lossType == .kto }

    /// TRL's names: `kl`, `rewards/chosen`, `logps/chosen`, `rewards/rejected`, `logps/rejected`,
    /// `rewards/margins` (each a mean over the micro-batch's desirable or undesirable completions).
    public static let metricNames = ["kl", "rewards/chosen", "logps/chosen", "rewards/rejected", "logps/rejected", "rewards/margins"]

    /// The KL estimate of a batch: mean(log π(y'|x) − log π_ref(y'|x)) clamped at 0 (0 without KL).
    public func klEstimate(policy: [Double], reference: [Double]) -> Double {
        guard usesKL, !policy.isEmpty else { return 0 }
        return max(0, zip(policy, reference).reduce(0) { $0 + $1.0 - $1.1 } / Double(policy.count))
    }

    /// The micro-batch's loss, [B] ∂loss/∂ log π(yᵢ|xᵢ), and TRL's metrics (a micro-batch without
    /// desirable completions logs no `rewards/chosen`, as TRL's, and `rewards/margins` needs both).
    public func evaluate(logps: [Double], reference: [Double], desirable: [Bool], kl: Double)
        -> (loss: Double, gradient: [Double], metrics: [String: MetricSum]) {
        let n = logps.count, b = beta
        var loss = 0.0
        var grad = [Double](repeating: 0, count: n)
        var rc = 0.0, lc = 0.0, nc = 0, rr = 0.0, lr = 0.0, nr = 0
        for i in 0..<n {
            let ratio = logps[i] - reference[i]
            let l: Double, d: Double   // the completion's weighted loss and ∂/∂ratio
            if desirable[i] {
                let s = DPOLoss.sigmoid(b * (ratio - (usesKL ? kl : 0)))
                l = desirableWeight * (1 - s); d = -desirableWeight * b * s * (1 - s)
                rc += b * ratio; lc += logps[i]; nc += 1
            } else {
                switch lossType {
                case .kto:
                    let s = DPOLoss.sigmoid(b * (kl - ratio))
                    l = undesirableWeight * (1 - s); d = undesirableWeight * b * s * (1 - s)
                case .apoZeroUnpaired:
                    let s = DPOLoss.sigmoid(b * ratio)
                    l = undesirableWeight * s; d = undesirableWeight * b * s * (1 - s)
                }
                rr += b * ratio; lr += logps[i]; nr += 1
            }
            loss += l
            grad[i] = d / Double(n)
        }
        var m: [String: MetricSum] = ["kl": MetricSum(sum: kl, count: 1)]
        if nc > 0 {
            m["rewards/chosen"] = MetricSum(sum: rc / Double(nc), count: 1)
            m["logps/chosen"] = MetricSum(sum: lc / Double(nc), count: 1)
        }
        if nr > 0 {
            m["rewards/rejected"] = MetricSum(sum: rr / Double(nr), count: 1)
            m["logps/rejected"] = MetricSum(sum: lr / Double(nr), count: 1)
        }
        if nc > 0 && nr > 0 { m["rewards/margins"] = MetricSum(sum: rc / Double(nc) - rr / Double(nr), count: 1) }
        return (n > 0 ? loss / Double(n) : 0, grad, m)
    }
}
