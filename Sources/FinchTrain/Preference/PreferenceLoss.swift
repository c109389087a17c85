import FinchModels
import Foundation

// Dimension letters: P pairs of a micro-batch.

/// The training objective of a run (`method`): supervised fine-tuning, or preference training.
public enum TrainingMethod: String, SettingChoice, Sendable {
    case sft
    /// Direct Preference Optimization (Rafailov et al., 2023), as TRL's `DPOTrainer` computes it.
    case dpo
    /// Simple Preference Optimization (Meng et al., 2024): length-averaged log-probabilities, a target
    /// margin, no reference; TRL's `CPOTrainer` with `loss_type="simpo"` (and `cpo_alpha`, 0 for SimPO).
    case simpo
    /// Odds Ratio Preference Optimization (Hong et al., 2024): the chosen answers' NLL plus an odds-ratio
    /// term on length-averaged log-probabilities, no reference; TRL's `ORPOTrainer`.
    case orpo
    /// Kahneman-Tversky Optimization (Ethayarajh et al., 2024): unpaired completions labelled
    /// desirable or not, a KL estimate from mismatched completions; TRL's `KTOTrainer`.
    case kto

    /// Whether the data are preference examples (pairs, or KTO's unpaired completions).
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
    /// EXO's pairwise form: KL of softmax(β·log-ratios) to [1−ε, ε], ε = `label_smoothing` (> 0).
    case exoPair = "exo_pair"
    /// NCA's pairwise form: −log σ(r_c) − ½·log σ(−r_c) − ½·log σ(−r_r), r = β·log-ratio.
    case ncaPair = "nca_pair"
    /// BCO's pairwise form: −log σ(r_c) − log σ(−r_r).
    case bcoPair = "bco_pair"
    /// SPPO with hard labels: (log-ratio_c − 1/(2β))² + (log-ratio_r + 1/(2β))².
    case sppoHard = "sppo_hard"
    /// APO-zero: 1 − σ(r_c) + σ(r_r).
    case apoZero = "apo_zero"
    /// APO-down: σ(r_c) + 1 − σ(β·Δ).
    case apoDown = "apo_down"
    /// DiscoPOP: the logistic and exponential losses of β·Δ mixed by σ(β·Δ / τ), τ = `discopop_tau`.
    case discopop
    /// −log σ(β·Δ̄), Δ̄ the difference of the length-averaged log-ratios.
    case sigmoidNorm = "sigmoid_norm"
    /// The mean negative log-likelihood of the chosen answers' tokens (no preference term).
    case sft
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

/// What a preference loss gives for a micro-batch of pairs.
public struct PairLossOutcome: Sendable, Equatable {
    /// The loss of the micro-batch (the mean per-pair loss, plus any term over the batch).
    public var loss: Double
    /// [P] ∂loss/∂ log π(chosen), ∂loss/∂ log π(rejected) (of the summed log-probabilities).
    public var dChosen: [Double]
    public var dRejected: [Double]
    /// Sums over the pairs of TRL's per-pair metrics (divide by the pairs for TRL's means).
    public var metricSums: [String: Double]
}

/// A preference loss over a micro-batch of pairs (sequences packed chosen first, then rejected).
public protocol PairLoss: Sendable {
    /// Whether it reads the reference's log-probabilities (SimPO and ORPO do not: no reference pass).
    var usesReference: Bool { get }
    /// Whether the chosen sequences carry labels on their prompt too (ORPO's NLL covers the whole
    /// chosen sequence); otherwise only answers are labelled.
    var labelsChosenPrompt: Bool { get }
    /// The metrics it logs, in TRL's names.
    var metricNames: [String] { get }
    /// The micro-batch's loss, metrics and gradient from the pass's log-probabilities, the
    /// reference's summed ones, and each answer's tokens.
    func outcome(_ lp: SequenceLogProbs, reference: (chosen: [Double], rejected: [Double]), chosenTokens: [Int],
                 rejectedTokens: [Int]) -> (PairLossOutcome, SequenceGradient)
}

/// A preference loss that is a function of each answer's summed log-probability (DPO, SimPO).
public protocol SummedPairLoss: PairLoss {
    func evaluate(_ s: PairLogProbs) -> PairLossOutcome
}

extension SummedPairLoss {
    public var labelsChosenPrompt: Bool { false }
    public func outcome(_ lp: SequenceLogProbs, reference: (chosen: [Double], rejected: [Double]), chosenTokens: [Int],
                        rejectedTokens: [Int]) -> (PairLossOutcome, SequenceGradient) {
        let n = chosenTokens.count
        let o = evaluate(PairLogProbs(chosen: Array(lp.sums[..<n]), rejected: Array(lp.sums[n...]), referenceChosen: reference.chosen,
                                      referenceRejected: reference.rejected, chosenTokens: chosenTokens, rejectedTokens: rejectedTokens))
        return (o, .perSequence(o.dChosen + o.dRejected))
    }
}

/// DPO's loss over a micro-batch of pairs, TRL's definition (trl 1.16 `DPOTrainer._compute_loss`,
/// `f_divergence_type` reverse_kl): the mean over the pairs of the per-pair loss of `lossType`,
/// its gradient with respect to every summed log-probability, and the metrics TRL logs.
public struct DPOLoss: SummedPairLoss, Equatable {
    public var beta: Double
    public var lossType: DPOLossType
    /// ε of the robust and EXO losses (the probability that a label is flipped), in [0, 0.5).
    public var labelSmoothing: Double
    /// τ of DiscoPOP (TRL's `discopop_tau`, default 0.05).
    public var discopopTau: Double

    public init(beta: Double = 0.1, lossType: DPOLossType = .sigmoid, labelSmoothing: Double = 0, discopopTau: Double = 0.05) {
        self.beta = beta; self.lossType = lossType; self.labelSmoothing = labelSmoothing; self.discopopTau = discopopTau
    }

    public var usesReference: Bool { true }
    /// `rewards/chosen`, `rewards/rejected` (β · log-ratio), `rewards/accuracies`, `rewards/margins`,
    /// `logps/chosen`, `logps/rejected`.
    public var metricNames: [String] {
        ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]
    }

    /// log σ(x), stable for large |x|.
    static func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }
    static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

    public func evaluate(_ s: PairLogProbs) -> PairLossOutcome {
        let p = s.count, b = beta, eps = labelSmoothing
        var loss = 0.0
        var dc = [Double](repeating: 0, count: p), dr = [Double](repeating: 0, count: p)
        var m: [String: Double] = ["rewards/chosen": 0, "rewards/rejected": 0, "rewards/accuracies": 0, "rewards/margins": 0,
                                   "logps/chosen": 0, "logps/rejected": 0]
        let chosenTokens = Double(s.chosenTokens.reduce(0, +))
        let sftLoss = -s.chosen.reduce(0, +) / max(1, chosenTokens)
        for i in 0..<p {
            let cr = s.chosen[i] - s.referenceChosen[i], rr = s.rejected[i] - s.referenceRejected[i]
            let delta = cr - rr
            var l: Double, dDelta = 0.0   // the pair's loss and ∂l/∂Δ (the losses not of Δ alone set dc / dr themselves)
            var own: (dc: Double, dr: Double)?   // ∂l/∂(log-ratio) of chosen and rejected, for those
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
            case .exoPair:
                let x = b * delta, qw = Self.sigmoid(x), ql = Self.sigmoid(-x), lqw = Self.logSigmoid(x), lql = Self.logSigmoid(-x)
                let lpw = log1p(-eps), lpl = log(eps)
                l = qw * (lqw - lpw) + ql * (lql - lpl)
                dDelta = b * qw * ql * ((lqw - lpw) - (lql - lpl))
            case .ncaPair:
                let rc = b * cr, rj = b * rr
                l = -Self.logSigmoid(rc) - 0.5 * Self.logSigmoid(-rc) - 0.5 * Self.logSigmoid(-rj)
                own = (b * (-Self.sigmoid(-rc) + 0.5 * Self.sigmoid(rc)), b * 0.5 * Self.sigmoid(rj))
            case .bcoPair:
                let rc = b * cr, rj = b * rr
                l = -Self.logSigmoid(rc) - Self.logSigmoid(-rj)
                own = (-b * Self.sigmoid(-rc), b * Self.sigmoid(rj))
            case .sppoHard:
                l = (cr - 0.5 / b) * (cr - 0.5 / b) + (rr + 0.5 / b) * (rr + 0.5 / b)
                own = (2 * (cr - 0.5 / b), 2 * (rr + 0.5 / b))
            case .apoZero:
                let sc = Self.sigmoid(b * cr), sr = Self.sigmoid(b * rr)
                l = 1 - sc + sr
                own = (-b * sc * (1 - sc), b * sr * (1 - sr))
            case .apoDown:
                let sc = Self.sigmoid(b * cr), sd = Self.sigmoid(b * delta)
                l = sc + 1 - sd
                own = (b * sc * (1 - sc) - b * sd * (1 - sd), b * sd * (1 - sd))
            case .discopop:
                let x = b * delta, tau = discopopTau, mix = Self.sigmoid(x / tau)
                let logistic = -Self.logSigmoid(x), expo = exp(-x)
                l = logistic * (1 - mix) + expo * mix
                let dMix = mix * (1 - mix) / tau
                dDelta = b * (-Self.sigmoid(-x) * (1 - mix) - logistic * dMix - expo * mix + expo * dMix)
            case .sigmoidNorm:
                let nc = Double(max(1, s.chosenTokens[i])), nr = Double(max(1, s.rejectedTokens[i]))
                let d = cr / nc - rr / nr
                l = -Self.logSigmoid(b * d)
                let g = -b * Self.sigmoid(-b * d)
                dc[i] = g / nc / Double(p); dr[i] = -g / nr / Double(p)
            case .sft:
                l = sftLoss   // the batch's mean NLL of the chosen tokens, the same for every pair
                dc[i] = -1 / max(1, chosenTokens)
            }
            if let own { dc[i] = own.dc / Double(p); dr[i] = own.dr / Double(p) }
            else if ![.ipo, .sigmoidNorm, .sft].contains(lossType) { dc[i] = dDelta / Double(p); dr[i] = -dDelta / Double(p) }
            loss += l
            let rc = b * cr, rj = b * rr
            m["rewards/chosen"]! += rc
            m["rewards/rejected"]! += rj
            m["rewards/accuracies"]! += rc > rj ? 1 : 0
            m["rewards/margins"]! += rc - rj
            m["logps/chosen"]! += s.chosen[i]
            m["logps/rejected"]! += s.rejected[i]
        }
        return PairLossOutcome(loss: p > 0 ? loss / Double(p) : 0, dChosen: dc, dRejected: dr, metricSums: m)
    }
}

/// SimPO's loss as TRL 1.16's `CPOTrainer` computes it with `loss_type="simpo"`: per pair
/// −(1−ε)·log σ(z) − ε·log σ(−z), z = β·(ā_chosen − ā_rejected) − γ, ā the log-probability averaged
/// over the answer's tokens; the mean over the pairs, plus `cpoAlpha` times the mean negative
/// log-likelihood of the chosen answers' tokens (CPO's term; 0 is SimPO itself). No reference.
public struct SimPOLoss: SummedPairLoss, Equatable {
    public var beta: Double
    /// γ, the target reward margin (TRL's `simpo_gamma`, default 0.5).
    public var gamma: Double
    public var labelSmoothing: Double
    /// The weight of the chosen answers' NLL (TRL's `cpo_alpha`).
    public var cpoAlpha: Double

    public init(beta: Double = 0.1, gamma: Double = 0.5, labelSmoothing: Double = 0, cpoAlpha: Double = 0) {
        self.beta = beta; self.gamma = gamma; self.labelSmoothing = labelSmoothing; self.cpoAlpha = cpoAlpha
    }

    public var usesReference: Bool { false }
    /// As CPO logs them: rewards are β · ā, `logps/*` the averaged log-probabilities, and `nll_loss`.
    public var metricNames: [String] {
        ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "nll_loss"]
    }

    public func evaluate(_ s: PairLogProbs) -> PairLossOutcome {
        let p = s.count, b = beta, eps = labelSmoothing
        var loss = 0.0
        var dc = [Double](repeating: 0, count: p), dr = [Double](repeating: 0, count: p)
        var m: [String: Double] = Dictionary(uniqueKeysWithValues: metricNames.map { ($0, 0) })
        let chosenTokens = Double(s.chosenTokens.reduce(0, +))
        let nll = chosenTokens > 0 ? -s.chosen.reduce(0, +) / chosenTokens : 0
        for i in 0..<p {
            let nc = Double(s.chosenTokens[i]), nr = Double(s.rejectedTokens[i])
            let ac = s.chosen[i] / nc, ar = s.rejected[i] / nr
            let z = b * (ac - ar) - gamma
            loss += -(1 - eps) * DPOLoss.logSigmoid(z) - eps * DPOLoss.logSigmoid(-z)
            let dz = (-(1 - eps) * DPOLoss.sigmoid(-z) + eps * DPOLoss.sigmoid(z)) / Double(p)
            dc[i] = dz * b / nc - (chosenTokens > 0 ? cpoAlpha / chosenTokens : 0)
            dr[i] = -dz * b / nr
            m["rewards/chosen"]! += b * ac
            m["rewards/rejected"]! += b * ar
            m["rewards/accuracies"]! += b * ac > b * ar ? 1 : 0
            m["rewards/margins"]! += b * ac - b * ar
            m["logps/chosen"]! += ac
            m["logps/rejected"]! += ar
            m["nll_loss"]! += cpoAlpha == 0 ? 0 : nll   // TRL logs 0 when the term is off
        }
        return PairLossOutcome(loss: p > 0 ? loss / Double(p) + cpoAlpha * nll : 0, dChosen: dc, dRejected: dr, metricSums: m)
    }
}

/// ORPO's loss as TRL 1.16's `ORPOTrainer` computes it: the mean NLL of every token of the chosen
/// sequences (prompt included, as TRL takes it) minus β times the mean over the pairs of log σ(L),
/// L = (ā_c − ā_r) − (log(1 − e^ā_c) − log(1 − e^ā_r)) the log odds ratio of the answers'
/// length-averaged log-probabilities ā. No reference. Its gradient reaches the chosen prompt rows
/// (the NLL), so it is given per row.
public struct ORPOLoss: PairLoss, Equatable {
    /// λ of the paper (TRL's `beta`, default 0.1).
    public var beta: Double
    public init(beta: Double = 0.1) { self.beta = beta }

    public var usesReference: Bool { false }
    public var labelsChosenPrompt: Bool { true }
    public var metricNames: [String] {
        ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
         "nll_loss", "log_odds_ratio", "log_odds_chosen"]
    }

    /// log(1 − eˣ) for x < 0, as TRL's `log1mexp` branches at −ln 2.
    static func log1mexp(_ x: Double) -> Double { x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x)) }

    public func outcome(_ lp: SequenceLogProbs, reference: (chosen: [Double], rejected: [Double]), chosenTokens: [Int],
                        rejectedTokens: [Int]) -> (PairLossOutcome, SequenceGradient) {
        let n = chosenTokens.count, b = beta
        var grad = [Double](repeating: 0, count: lp.rows.count)
        var m: [String: Double] = Dictionary(uniqueKeysWithValues: metricNames.map { ($0, 0) })
        // The NLL over every counted row of the chosen sequences (prompt rows included for a decoder;
        // an encoder-decoder's chosen rows are its answer).
        let nllRows = lp.counts[..<n].reduce(0, +)
        let nll = -lp.sums[..<n].reduce(0, +) / Double(max(1, nllRows))
        func countedRows(_ s: Int) -> [Int] { lp.ranges[s].filter { lp.counted.isEmpty ? true : lp.counted[$0] } }
        var ratioSum = 0.0
        for i in 0..<n {
            let rejected = n + i
            // The chosen answer's rows: the last chosenTokens[i] counted rows.
            let answer = countedRows(i).suffix(chosenTokens[i])
            let ac = answer.reduce(0.0) { $0 + Double(lp.rows[$1]) } / Double(chosenTokens[i])
            let ar = lp.sums[rejected] / Double(lp.counts[rejected])
            let logOdds = (ac - ar) - (Self.log1mexp(ac) - Self.log1mexp(ar))
            let ratio = DPOLoss.logSigmoid(logOdds)
            ratioSum += ratio
            // ∂(−β·mean log σ(L))/∂L, then through ā_c and ā_r to their rows.
            let dL = -b * DPOLoss.sigmoid(-logOdds) / Double(n)
            let dc = dL / (1 - exp(ac)) / Double(chosenTokens[i]), dr = -dL / (1 - exp(ar)) / Double(lp.counts[rejected])
            for r in answer { grad[r] += dc }
            for r in countedRows(rejected) { grad[r] += dr }   // the rejected sequence's labels are its answer
            m["rewards/chosen"]! += b * ac
            m["rewards/rejected"]! += b * ar
            m["rewards/accuracies"]! += b * ac > b * ar ? 1 : 0
            m["rewards/margins"]! += b * ac - b * ar
            m["logps/chosen"]! += ac
            m["logps/rejected"]! += ar
            m["nll_loss"]! += nll
            m["log_odds_ratio"]! += ratio
            m["log_odds_chosen"]! += logOdds
        }
        for i in 0..<n { for r in countedRows(i) { grad[r] += -1 / Double(max(1, nllRows)) } }
        let loss = nll - b * ratioSum / Double(max(1, n))
        return (PairLossOutcome(loss: loss, dChosen: [], dRejected: [], metricSums: m), .perRow(grad))
    }
}
