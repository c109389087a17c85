import FinchCore
import FinchFormats
import Foundation

/// AdamW with decoupled weight decay, step for step as PyTorch's `torch.optim.AdamW`
/// (single-tensor path, f32 state):
/// `p ← p·(1 − lr·λ)`, `m ← m + (1 − β1)(g − m)`, `v ← β2·v + (1 − β2)·g²`,
/// `p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)`.
///
/// With `paged`, the moments live in file-backed memory (`PagedMemory`): the same numbers,
/// pages the OS can evict under pressure (`--optimizer paged_adamw`).
public final class AdamW: Optimizer, @unchecked Sendable {
    public struct Hyperparameters: Sendable, Codable, Equatable {
        public var beta1: Double = 0.9
        public var beta2: Double = 0.999
        public var epsilon: Double = 1e-8
        public var weightDecay: Double = 0
        public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0) {
            self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        }
    }

    /// The tensors it updates, by name; `grad` is read at each step.
    public let parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)]
    public let hyper: Hyperparameters
    /// First and second moments, one per parameter (zero before the first step).
    public private(set) var expAvg: [Buffer<Float>]
    public private(set) var expAvgSq: [Buffer<Float>]
    /// Steps taken (t in the bias corrections).
    public private(set) var step = 0

    /// Whether the moments are in file-backed paged memory.
    public let paged: Bool

    /// Where the update runs (the trained model's backend).
    public var backend: any ComputeBackend = CPUBackend.shared
    /// Each parameter's group (learning-rate factor, weight decay); nil: all at the learning rate
    /// with `hyper.weightDecay`.
    public var groups: [ParameterGroup]? {
        didSet { precondition(groups == nil || groups!.count == parameters.count, "one group per parameter") }
    }

    public init(parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)], hyper: Hyperparameters) {
        self.parameters = parameters
        self.hyper = hyper
        self.paged = false
        expAvg = parameters.map { Buffer(count: $0.value.count) }
        expAvgSq = parameters.map { Buffer(count: $0.value.count) }
    }

    /// With `paged`, the moments are allocated in `PagedMemory`.
    /// - Throws: ``TrainError/io(path:reason:)`` when paged memory cannot be set up.
    public init(parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)], hyper: Hyperparameters,
                paged: Bool) throws {
        self.parameters = parameters
        self.hyper = hyper
        self.paged = paged
        func make(_ n: Int) throws -> Buffer<Float> { paged ? try PagedMemory.buffer(count: n) : Buffer(count: n) }
        expAvg = try parameters.map { try make($0.value.count) }
        expAvgSq = try parameters.map { try make($0.value.count) }
    }

    public var name: String { paged ? "paged_adamw" : "adamw" }

    /// Bytes of optimizer state.
    public var stateBytes: Int { expAvg.reduce(0) { $0 + $1.byteCount } * 2 }

    /// One update of every parameter with learning rate `lr`.
    public func update(lr: Double) {
        step += 1
        let t = Double(step)
        let bc1 = 1 - pow(hyper.beta1, t), bc2Sqrt = (1 - pow(hyper.beta2, t)).squareRoot()
        let w1 = Float(1 - hyper.beta1), b2 = Float(hyper.beta2), w2 = Float(1 - hyper.beta2)
        let bc2 = Float(bc2Sqrt), eps = Float(hyper.epsilon)
        for (k, p) in parameters.enumerated() {
            let g = groups?[k], plr = lr * (g?.lrFactor ?? 1)
            let h = AdamWStep(decay: Float(1 - plr * (g?.weightDecay ?? hyper.weightDecay)), oneMinusBeta1: w1, beta2: b2,
                              oneMinusBeta2: w2, stepSize: Float(plr / bc1), bc2: bc2, epsilon: eps)
            backend.adamWUpdate(value: p.value.pointer, grad: p.grad.pointer, expAvg: expAvg[k].pointer,
                                expAvgSq: expAvgSq[k].pointer, count: p.value.count, step: h)
        }
    }

    /// Writes the moments and the step count (safetensors: `<name>.exp_avg`, `<name>.exp_avg_sq`;
    /// metadata `step`), atomically.
    public func save(to path: String) throws {
        var entries: [SafeTensorsWriter.Entry] = []
        for (k, p) in parameters.enumerated() {
            entries.append(.float32(name: p.name + ".exp_avg", shape: [p.value.count], values: expAvg[k].array))
            entries.append(.float32(name: p.name + ".exp_avg_sq", shape: [p.value.count], values: expAvgSq[k].array))
        }
        try SafeTensorsWriter.write(entries, metadata: ["step": String(step), "optimizer": name], to: path)
    }

    /// Restores what `save` wrote; every parameter must be present with its size.
    public func load(from path: String) throws {
        let (file, st) = try openState(at: path)
        for (k, p) in parameters.enumerated() {
            for (suffix, buffer) in [(".exp_avg", expAvg[k]), (".exp_avg_sq", expAvgSq[k])] {
                guard file.info(p.name + suffix) != nil else {
                    throw TrainError.badCheckpoint(path: path, reason: "no optimizer state for \(p.name); was it saved by a run with other LoRA settings?")
                }
                let values = try file.floats(p.name + suffix)
                guard values.count == buffer.count else {
                    throw TrainError.badCheckpoint(path: path, reason: "\(p.name + suffix) has \(values.count) values, expected \(buffer.count)")
                }
                values.withUnsafeBufferPointer { buffer.pointer.update(from: $0.baseAddress!, count: values.count) }
            }
        }
        step = st
    }
}
