import FinchCore

// Dimension letters: N packed rows, C the head's input features, S sequences.

/// Each sequence's summed log-probability of its counted labels, log π(y | x) = −Σ of its rows'
/// cross-entropies, and how many labels counted: what preference objectives (DPO, ORPO, SimPO,
/// KTO) score. Row losses are stored in f32 as the loss kernel stores them; the sums are f64.
public struct SequenceLogProbs: Sendable, Equatable {
    /// [S] Σ log p(label) over each sequence's counted rows.
    public var sums: [Double] = []
    /// [S] the counted rows (labels that are not -100) of each sequence.
    public var counts: [Int] = []
    /// [N] each row's log-probability of its target, −(its cross-entropy) as stored in f32 (0 where
    /// the target is -100), and [S] each sequence's rows: for objectives that weigh rows apart (ORPO).
    public var rows: [Float] = []
    public var ranges: [Range<Int>] = []
    /// [N] whether each row has a target (is not -100): which rows a sequence's labels are, in either
    /// layout (a decoder's last row predicts nothing; an encoder-decoder's rows all predict).
    public var counted: [Bool] = []
    /// A mixture of experts with the load-balancing loss in training: router_aux_loss_coef × that loss
    /// of the pass (its gradient is in the pass's), which TRL adds to the objective's loss; 0 otherwise.
    public var auxiliaryLoss: Double = 0

    public init(sums: [Double] = [], counts: [Int] = []) { self.sums = sums; self.counts = counts }

    /// From per-row losses [N] (0 on ignored rows), per-row targets [N] and the sequences' row ranges.
    public init(rowLosses: UnsafePointer<Float>, targets: [Int32], sequences: [Range<Int>]) {
        for s in sequences {
            var sum = 0.0, count = 0
            for r in s where targets[r] != CrossEntropy.ignoreIndex { sum -= Double(rowLosses[r]); count += 1 }
            sums.append(sum); counts.append(count)
        }
        rows = (0..<targets.count).map { -rowLosses[$0] }
        counted = targets.map { $0 != CrossEntropy.ignoreIndex }
        ranges = sequences
    }

    /// The LM head's part of a training pass under a sequence objective: every row's cross-entropy
    /// and its gradient at unit scale into dx [N, C] (zero on entry; the head W [V, C] applied to
    /// x [N, C] chunk by chunk), the sequences' log-probabilities, `objective`'s ∂loss/∂(each sum),
    /// and each sequence's rows of dx scaled by minus its entry (log π = −Σ cross-entropy), so that
    /// dx = ∂loss/∂x. Returns the log-probabilities the objective saw.
    static func headBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight, targets: [Int32],
                             sequences: [Range<Int>], backend: any ComputeBackend, scratch: Scratch,
                             objective: SequenceObjective, headGrad: UnsafeMutablePointer<Float>? = nil) throws -> SequenceLogProbs {
        let n = targets.count, c = head.inFeatures
        let losses = Buffer<Float>(count: max(1, n))
        _ = try targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForwardBackward(dx: dx, x: x, head: head, targets: t.baseAddress!, rows: n, scale: 1,
                                                    losses: losses.pointer, scratch: scratch)
        }
        let scores = SequenceLogProbs(rowLosses: losses.pointer, targets: targets, sequences: sequences)
        // Runs of rows with one weight: ∂loss/∂(their log-probabilities).
        var runs: [(rows: Range<Int>, weight: Double)] = []
        switch try objective(scores) {
        case .perSequence(let g):
            precondition(g.count == sequences.count, "a sequence objective returns one gradient per sequence")
            for (s, rows) in sequences.enumerated() where !rows.isEmpty { runs.append((rows, g[s])) }
        case .perRow(let g):
            precondition(g.count == n, "a row objective returns one gradient per row")
            var r = 0
            while r < n {   // runs of equal weights scaled together
                var e = r + 1
                while e < n && g[e] == g[r] { e += 1 }
                runs.append((r..<e, g[r]))
                r = e
            }
        }
        for run in runs { backend.scale(dx + run.rows.lowerBound * c, count: run.rows.count * c, by: Float(-run.weight)) }
        // A trained head (modules_to_save): its gradient needs each row's weight inside the product, so the loss's
        // backward runs again per run of rows, scaled, into `headGrad` (its input gradient discarded).
        if let headGrad {
            try targets.withUnsafeBufferPointer { t in
                for run in runs where run.weight != 0 {
                    let discard = Buffer<Float>(count: run.rows.count * c)
                    _ = try backend.crossEntropyForwardBackward(dx: discard.pointer, x: x + run.rows.lowerBound * c, head: head,
                                                                targets: t.baseAddress! + run.rows.lowerBound, rows: run.rows.count,
                                                                scale: Float(-run.weight), losses: nil, headGrad: headGrad, scratch: scratch)
                }
            }
        }
        return scores
    }
}

/// A training objective over whole sequences: given the batch's `SequenceLogProbs`, returns the
/// loss's gradient with respect to the log-probabilities (the loss's scale included: with gradient
/// accumulation, the share of the step this micro-batch is).
public typealias SequenceObjective = (SequenceLogProbs) throws -> SequenceGradient

/// ∂loss/∂(log-probabilities), as a sequence objective gives it.
public enum SequenceGradient: Sendable {
    /// [S] ∂loss/∂(each sequence's summed log-probability), in batch order.
    case perSequence([Double])
    /// [N] ∂loss/∂(each row's log-probability of its target); rows whose target is -100 take none.
    case perRow([Double])
}
