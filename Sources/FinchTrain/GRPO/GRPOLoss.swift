import FinchModels
import Foundation

// Dimension letters: B completions of a batch (G per prompt), T a completion's counted tokens, F reward functions.

/// How GRPO aggregates its per-token losses (TRL's GRPOConfig `loss_type`).
public enum GRPOLossType: String, Sendable, CaseIterable {
    /// Each completion's token mean, then the mean over completions (DeepSeekMath's GRPO).
    case grpo
    /// The token sum over (completions × max_completion_length) (Dr. GRPO: no length bias).
    case drGRPO = "dr_grpo"
    /// The token mean over the whole generation batch, every rank's tokens counted (DAPO; TRL's default).
    case dapo
    /// The token mean over the micro-batch.
    case bnpo
}

/// How GRPO scales the rewards' deviations from their group mean (TRL's `scale_rewards`).
public enum RewardScaling: String, Sendable, CaseIterable {
    /// By the standard deviation of the completion's group (GRPO).
    case group
    /// By the standard deviation over the whole batch.
    case batch
    /// Not at all (Dr. GRPO).
    case none
}

/// The settings of the GRPO objective, named and defaulted as TRL's GRPOConfig names them.
public struct GRPOSettings: Sendable, Equatable {
    /// Completions sampled per prompt (`num_generations`).
    public var numGenerations = 8
    /// `max_completion_length` (Dr. GRPO's denominator; rollouts stop there).
    public var maxCompletionLength = 512
    /// The KL penalty's weight (`beta`); 0 skips the reference pass.
    public var beta = 0.0
    /// The clipping range: the ratio is kept in [1 − epsilon, 1 + epsilonHigh] (`epsilon`, `epsilon_high`,
    /// which defaults to `epsilon`).
    public var epsilon = 0.2
    public var epsilonHigh: Double? = nil
    /// Two-sided clipping's upper bound on the unclipped ratio (`delta`; nil: none).
    public var delta: Double? = nil
    public var lossType = GRPOLossType.dapo
    public var scaleRewards = RewardScaling.group
    /// A completion cut at `maxCompletionLength` (no end-of-sequence) takes no loss (`mask_truncated_completions`).
    public var maskTruncatedCompletions = false
    /// Updates per batch of rollouts (`num_iterations`); after the first, the ratio is to the rollouts' policy.
    public var numIterations = 1
    /// The KL term weighted by the importance ratio (`use_bias_correction_kl`: TRL's default).
    public var useBiasCorrectionKL = true
    public init() {}

    public var upperClip: Double { epsilonHigh ?? epsilon }
}

/// One completion of a micro-batch as GRPO's loss sees it: its counted tokens' log-probabilities under the model
/// (the ones the loss differentiates), under the policy that sampled it (nil: the same, as for the first of
/// `numIterations` updates) and under the reference (nil when beta is 0), and its advantage.
public struct GRPOCompletion: Sendable {
    public var logProbs: [Double]
    public var oldLogProbs: [Double]?
    public var referenceLogProbs: [Double]?
    public var advantage: Double
    public init(logProbs: [Double], oldLogProbs: [Double]? = nil, referenceLogProbs: [Double]? = nil, advantage: Double) {
        self.logProbs = logProbs; self.oldLogProbs = oldLogProbs; self.referenceLogProbs = referenceLogProbs; self.advantage = advantage
    }
}

/// A micro-batch's GRPO loss, its gradient with respect to each completion's token log-probabilities, and
/// what TRL logs of it: the mean KL to the reference and the share of tokens clipped below, above, or either
/// (token means over the micro-batch).
public struct GRPOLossResult: Sendable {
    public var loss: Double
    /// [B][T] ∂loss/∂(each counted token's log-probability).
    public var gradients: [[Double]]
    public var meanKL: Double
    public var clipLow: Double, clipHigh: Double, clipRegion: Double
}

public enum GRPOLoss {
    /// TRL's advantages ("sum_then_normalize"): each completion's reward is the weighted sum of its reward
    /// functions' values (`rewards` [B][F], nil where a function cannot score it; a completion no function scores
    /// is left out of its group's mean and standard deviation and gets advantage 0), less its group's mean
    /// (groups are `groupSize` consecutive completions), divided by the group's or the batch's standard deviation
    /// (Bessel-corrected) + 1e-4 unless `scaling` is none. Returns the advantages and the summed rewards (NaN
    /// where unscorable).
    public static func advantages(rewards: [[Double?]], weights: [Double], groupSize: Int,
                                  scaling: RewardScaling) -> (advantages: [Double], rewards: [Double]) {
        precondition(groupSize > 0 && rewards.count % groupSize == 0, "completions come in whole groups")
        let total: [Double] = rewards.map { r in
            precondition(r.count == weights.count, "one weight per reward function")
            if r.allSatisfy({ $0 == nil }) { return .nan }
            var sum = 0.0
            for (value, weight) in zip(r, weights) { if let value { sum += weight * value } }
            return sum
        }
        func meanAndStd(_ xs: ArraySlice<Double>) -> (mean: Double, std: Double) {
            let v = xs.filter { !$0.isNaN }
            let mean = v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
            guard v.count > 1 else { return (mean, .nan) }
            return (mean, (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)).squareRoot())
        }
        let batch = meanAndStd(total[...])
        var advantages = [Double](repeating: 0, count: total.count)
        for start in stride(from: 0, to: total.count, by: groupSize) {
            let group = meanAndStd(total[start..<(start + groupSize)])
            let std = scaling == .batch ? batch.std : group.std
            for i in start..<(start + groupSize) {
                var a = total[i] - group.mean
                if scaling != .none { a /= std + 1e-4 }
                advantages[i] = a.isNaN ? 0 : a
            }
        }
        return (advantages, total)
    }

    /// The loss of one micro-batch of a step's `accumulation` and its gradients, as TRL's `_compute_loss` makes
    /// them (token-level importance ratios): per token, −min(r·A, clip(r)·A) + beta·KL with
    /// r = exp(log π − log π_old) (capped at `delta` when set) and KL = exp(ref − log π) − (ref − log π) − 1
    /// (times r with `useBiasCorrectionKL`), then
    /// aggregated by `lossType`; dapo divides by `generationTokens` (every counted token of the step's rollouts,
    /// on every rank) over `ranks`. Where both terms of the minimum are equal the gradient is shared between them
    /// as PyTorch shares it (which gives the full gradient of r where it is not clipped).
    public static func microBatch(_ completions: [GRPOCompletion], settings s: GRPOSettings, accumulation: Int = 1,
                                  generationTokens: Int = 0, ranks: Int = 1) -> GRPOLossResult {
        precondition(s.lossType != .dapo || generationTokens > 0, "dapo divides by the generation batch's tokens: give generationTokens")
        let low = 1 - s.epsilon, high = 1 + s.upperClip
        var perToken: [[Double]] = [], grads: [[Double]] = []
        var klSum = 0.0, lowCount = 0, highCount = 0, tokens = 0
        for c in completions {
            var losses: [Double] = [], dl: [Double] = []
            for t in c.logProbs.indices {
                let lp = c.logProbs[t], old = c.oldLogProbs?[t] ?? lp, a = c.advantage
                let ratio = exp(lp - old)
                let clipped = min(max(ratio, low), high)
                let capped = s.delta.map { min(ratio, $0) } ?? ratio
                let l1 = capped * a, l2 = clipped * a
                let (w1, w2): (Double, Double) = l1 < l2 ? (1, 0) : l1 > l2 ? (0, 1) : (0.5, 0.5)
                let d1 = s.delta.map { ratio <= $0 ? 1.0 : 0 } ?? 1, d2 = ratio >= low && ratio <= high ? 1.0 : 0
                var loss = -min(l1, l2), grad = -(w1 * d1 + w2 * d2) * a * ratio
                if s.beta != 0, let ref = c.referenceLogProbs?[t] {
                    var kl = exp(ref - lp) - (ref - lp) - 1, dkl = 1 - exp(ref - lp)
                    if s.useBiasCorrectionKL { (kl, dkl) = (kl * ratio, dkl * ratio + kl * ratio) }
                    loss += s.beta * kl
                    grad += s.beta * dkl
                    klSum += kl
                }
                if ratio < low && a < 0 { lowCount += 1 }
                if ratio > high && a > 0 { highCount += 1 }
                losses.append(loss); dl.append(grad)
            }
            tokens += c.logProbs.count
            perToken.append(losses); grads.append(dl)
        }
        // Each token's weight in the aggregate.
        let b = Double(completions.count), n = Double(max(tokens, 1)), accum = Double(accumulation)
        func weight(_ i: Int) -> Double {
            switch s.lossType {
            case .grpo: return 1 / (Double(max(perToken[i].count, 1)) * b * accum)
            case .bnpo: return 1 / (n * accum)
            case .drGRPO: return 1 / (b * Double(s.maxCompletionLength) * accum)
            case .dapo: return 1 / max(Double(generationTokens) / Double(ranks), 1)   // per micro-batch of the generation
            }
        }
        var loss = 0.0
        for i in perToken.indices {
            let w = weight(i)
            loss += perToken[i].reduce(0, +) * w
            grads[i] = grads[i].map { $0 * w }
        }
        return GRPOLossResult(loss: loss, gradients: grads, meanKL: klSum / n, clipLow: Double(lowCount) / n,
                              clipHigh: Double(highCount) / n, clipRegion: Double(lowCount + highCount) / n)
    }
}

extension GRPOLoss {
    /// Each sequence's counted rows' log-probabilities, in order: its completion tokens' (`rows` [N], `counted` [N]).
    public static func tokenLogProbs(_ scores: SequenceLogProbs) -> [[Double]] {
        scores.ranges.map { r in r.filter { scores.counted[$0] }.map { Double(scores.rows[$0]) } }
    }

    /// The sequence objective of a micro-batch of completions (one training sequence each: prompt and completion,
    /// labels on the completion): their token log-probabilities under the model go into `microBatch` with each
    /// one's old-policy and reference log-probabilities (nil: none) and advantage, and its gradients come back per
    /// row. `observe` receives the result and the log-probabilities the loss saw.
    public static func objective(advantages: [Double], old: [[Double]?], reference: [[Double]?], settings: GRPOSettings,
                                 accumulation: Int, generationTokens: Int, ranks: Int,
                                 observe: @escaping (GRPOLossResult, [[Double]]) -> Void) -> SequenceObjective {
        { scores in
            let logProbs = tokenLogProbs(scores)
            precondition(logProbs.count == advantages.count, "one advantage per completion")
            let completions = logProbs.indices.map { i in
                GRPOCompletion(logProbs: logProbs[i], oldLogProbs: old[i], referenceLogProbs: reference[i], advantage: advantages[i])
            }
            let result = microBatch(completions, settings: settings, accumulation: accumulation,
                                    generationTokens: generationTokens, ranks: ranks)
            observe(result, logProbs)
            var perRow = [Double](repeating: 0, count: scores.rows.count)
            for (i, r) in scores.ranges.enumerated() {
                for (t, row) in r.filter({ scores.counted[$0] }).enumerated() { perRow[row] = result.gradients[i][t] }
            }
            return .perRow(perRow)
        }
    }
}
