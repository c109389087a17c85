/// Errors of training runs: settings, checkpoints, numerics.
public enum TrainError: Error, CustomStringConvertible, Sendable {
    case invalidSetting(String)
    case badCheckpoint(path: String, reason: String)
    case nonFiniteLoss(step: Int, loss: Double, lastCheckpoint: String?)
    case outputExists(path: String)
    /// A file the run needs could not be created or written (paged optimizer state).
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidSetting(let s): return "invalid training setting: \(s)"
        case .badCheckpoint(let p, let r): return "\(p): cannot resume from this checkpoint: \(r)"
        case .nonFiniteLoss(let step, let loss, let last):
            return "step \(step): the loss became \(loss); training stopped without applying this update. "
                + (last.map { "The last good checkpoint is \($0). " } ?? "No checkpoint was saved yet. ")
                + "Lower the learning rate, set --max-grad-norm, or check the data."
        case .io(let p, let r):
            return "\(p): \(r); set FINCH_PAGED_DIR to a writable directory with free space, or use --optimizer adamw"
        case .outputExists(let p):
            return "\(p) already holds a finished run (adapter_model.safetensors); choose another --output, or --resume to continue it"
        }
    }
}
