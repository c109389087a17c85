import FinchCore
import FinchFormats

/// What the trainer needs of an optimizer: one update per step, its state size, and a
/// checkpoint of its state that resumes exactly.
public protocol Optimizer: AnyObject, Sendable {
    /// The tensors it updates, by name; `grad` is read at each step.
    var parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)] { get }
    /// Steps taken.
    var step: Int { get }
    /// Bytes of optimizer state.
    var stateBytes: Int { get }
    /// The `--optimizer` name (`adamw`, `paged_adamw`, `adamw_8bit`, `paged_adamw_8bit`).
    var name: String { get }
    /// One update of every parameter with learning rate `lr`.
    func update(lr: Double)
    /// Writes the state (safetensors, metadata `step` and `optimizer`), atomically.
    func save(to path: String) throws
    /// Restores what `save` wrote.
    func load(from path: String) throws
}

extension Optimizer {
    /// Opens a state file `save` wrote: its tensors and step count, after checking that its
    /// optimizer kind has this one's layout.
    func openState(at path: String) throws -> (file: SafeTensorsFile, step: Int) {
        let file = try SafeTensorsFile(path: path)
        guard let s = file.metadata["step"], let step = Int(s), step >= 0 else {
            throw TrainError.badCheckpoint(path: path, reason: "optimizer state has no step count")
        }
        try checkKind(file.metadata["optimizer"], path: path)
        return (file, step)
    }

    /// Refuses a checkpoint written by an optimizer whose state has another layout (32-bit vs
    /// 8-bit); paged and unpaged variants share theirs.
    func checkKind(_ saved: String?, path: String) throws {
        guard let saved else { return }
        let eightBit = { (n: String) in n.hasSuffix("_8bit") }
        if eightBit(saved) != eightBit(name) {
            throw TrainError.badCheckpoint(path: path, reason: "its optimizer state is \(saved), this run uses \(name); resume with --optimizer \(saved)")
        }
    }
}

/// `--optimizer`: AdamW with 32-bit or 8-bit state, in ordinary or paged memory.
public enum OptimizerKind: String, Sendable, CaseIterable, Codable {
    case adamw
    case pagedAdamW = "paged_adamw"
    case adamw8bit = "adamw_8bit"
    case pagedAdamW8bit = "paged_adamw_8bit"

    /// Also accepts the names qlora / transformers use (`paged_adamw_32bit`, `adamw_torch`, `adamw_bnb_8bit`).
    public init?(name: String) {
        switch name.lowercased() {
        case "adamw", "adamw_torch", "adamw_hf", "adamw_32bit": self = .adamw
        case "paged_adamw", "paged_adamw_32bit": self = .pagedAdamW
        case "adamw_8bit", "adamw_bnb_8bit", "adamw8bit": self = .adamw8bit
        case "paged_adamw_8bit": self = .pagedAdamW8bit
        default: return nil
        }
    }

    /// The optimizer over `parameters`, updating on `backend` (the trained model's), with each
    /// parameter's `groups` entry (nil: all at the learning rate with `hyper.weightDecay`).
    public func make(parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)],
                     hyper: AdamW.Hyperparameters, groups: [ParameterGroup]? = nil,
                     backend: any ComputeBackend = CPUBackend.shared) throws -> any Optimizer {
        func adamW(paged: Bool) throws -> AdamW {
            let a = try AdamW(parameters: parameters, hyper: hyper, paged: paged)
            a.backend = backend; a.groups = groups
            return a
        }
        func adamW8bit(paged: Bool) throws -> AdamW8bit {
            let a = try AdamW8bit(parameters: parameters, hyper: hyper, paged: paged)
            a.backend = backend; a.groups = groups
            return a
        }
        switch self {
        case .adamw: return try adamW(paged: false)
        case .pagedAdamW: return try adamW(paged: true)
        case .adamw8bit: return try adamW8bit(paged: false)
        case .pagedAdamW8bit: return try adamW8bit(paged: true)
        }
    }
}
