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

    public init(sums: [Double] = [], counts: [Int] = []) { self.sums = sums; self.counts = counts }

    /// From per-row losses [N] (0 on ignored rows), per-row targets [N] and the sequences' row ranges.
    public init(rowLosses: UnsafePointer<Float>, targets: [Int32], sequences: [Range<Int>]) {
        for s in sequences {
            var sum = 0.0, count = 0
            for r in s where targets[r] != CrossEntropy.ignoreIndex { sum -= Double(rowLosses[r]); count += 1 }
            sums.append(sum); counts.append(count)
        }
    }

    /// The LM head's part of a training pass under a sequence objective: every row's cross-entropy
    /// and its gradient at unit scale into dx [N, C] (zero on entry; the head W [V, C] applied to
    /// x [N, C] chunk by chunk), the sequences' log-probabilities, `objective`'s ∂loss/∂(each sum),
    /// and each sequence's rows of dx scaled by minus its entry (log π = −Σ cross-entropy), so that
    /// dx = ∂loss/∂x. Returns the log-probabilities the objective saw.
    static func headBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight, targets: [Int32],
                             sequences: [Range<Int>], backend: any ComputeBackend, scratch: Scratch,
                             objective: SequenceObjective) throws -> SequenceLogProbs {
        let n = targets.count, c = head.inFeatures
        let losses = Buffer<Float>(count: max(1, n))
        _ = try targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForwardBackward(dx: dx, x: x, head: head, targets: t.baseAddress!, rows: n, scale: 1,
                                                    losses: losses.pointer, scratch: scratch)
        }
        let scores = SequenceLogProbs(rowLosses: losses.pointer, targets: targets, sequences: sequences)
        let gradient = try objective(scores)
        precondition(gradient.count == sequences.count, "a sequence objective returns one gradient per sequence")
        for (s, rows) in sequences.enumerated() where !rows.isEmpty {
            backend.scale(dx + rows.lowerBound * c, count: rows.count * c, by: Float(-gradient[s]))
        }
        return scores
    }
}

/// A training objective over whole sequences: given the batch's `SequenceLogProbs`, returns
/// ∂loss/∂(each sequence's summed log-probability), one entry per sequence in batch order (the
/// loss's scale included: with gradient accumulation, the share of the step this micro-batch is).
public typealias SequenceObjective = (SequenceLogProbs) throws -> [Double]
