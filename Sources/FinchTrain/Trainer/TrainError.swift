/// Errors of training runs: settings, checkpoints, numerics.
public enum TrainError: Error, CustomStringConvertible, Sendable {
    /// The data gave no training example (every record empty, or cut away).
    case noTrainingExamples
    /// `method` and the data given do not go together (pairs for sft, sequences for a preference method).
    case methodDataMismatch(method: String)
    case badCheckpoint(path: String, reason: String)
    /// `ranks`: in a distributed run, the ranks whose own values were not finite before the sum
    /// (every rank stops at the same step: the sum carries the NaN to all).
    case nonFiniteLoss(step: Int, loss: Double, lastCheckpoint: String?, ranks: RankReport? = nil)
    case outputExists(path: String)
    /// Writing the checkpoint of `step` failed (a full disk, a read-only directory); nothing of it
    /// was left behind and the earlier checkpoints are whole.
    case checkpointFailed(step: Int, reason: String, lastCheckpoint: String?)
    /// A file the run needs could not be created or written (paged optimizer state).
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .noTrainingExamples:
            return "there are no training examples; check that --data has records of its format and that --max-seq-len leaves room for them"
        case .methodDataMismatch(let m):
            return m == "sft" ? "method sft trains on sequences, but preference examples were given; set method: dpo (--method dpo) to train on pairs"
                : m == "kto" ? "method kto trains on unpaired examples ({prompt, completion, label}, or pairs unpaired as TRL does: PreferenceData.loadUnpaired), but sequences or pairs were given"
                : "method \(m) trains on preference pairs ({prompt, chosen, rejected}), but sequences or unpaired examples were given"
        case .badCheckpoint(let p, let r): return "\(p): cannot resume from this checkpoint: \(r)"
        case .nonFiniteLoss(let step, let loss, let last, let ranks):
            return "step \(step): the loss became \(loss)\(ranks.map { " (\($0))" } ?? ""); training stopped without applying this update. "
                + (last.map { "The last good checkpoint is \($0). " } ?? "No checkpoint was saved yet. ")
                + "Lower the learning rate, set --max-grad-norm, or check the data."
        case .io(let p, let r):
            return "\(p): \(r); set FINCH_PAGED_DIR to a writable directory with free space, or use --optimizer adamw"
        case .checkpointFailed(let step, let reason, let last):
            return "step \(step): the checkpoint could not be written (\(reason)). "
                + (last.map { "The last whole checkpoint is \($0); " } ?? "No checkpoint was saved yet; ")
                + "free space (or choose another --output) and continue with --resume."
        case .outputExists(let p):
            return "\(p) already holds a finished run (adapter_model.safetensors); choose another --output, or --resume to continue it"
        }
    }
}

/// The ranks of a distributed run that brought non-finite values to a step's sum.
public struct RankReport: Sendable, Equatable, CustomStringConvertible {
    /// Rank numbers (-1 for ranks ≥ 52, which are counted but not named).
    public let bad: [Int]
    public let of: Int

    public var description: String {
        if bad.isEmpty { return "the sum over \(of) ranks overflowed; no rank's own values were" }
        let named = bad.filter { $0 >= 0 }.map(String.init)
        let more = bad.count - named.count
        let list = named.joined(separator: ", ") + (more > 0 ? "\(named.isEmpty ? "" : " and ")\(more) rank(s) ≥ 52" : "")
        return "non-finite gradients or loss on rank\(bad.count == 1 ? "" : "s") \(list) of \(of)"
    }
}
