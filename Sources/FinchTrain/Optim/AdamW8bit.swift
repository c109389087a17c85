import FinchCore
import FinchFormats
import FinchQuant
import Foundation

// Dimension letters: N elements of a parameter, B = ⌈N / 256⌉ blocks.

/// bitsandbytes' 8-bit AdamW (`bnb.optim.AdamW8bit`, block-wise, CPU update
/// `_optimizer_update_8bit_blockwise_cpu`): both moments are stored as 8-bit codes in blocks of
/// 256 with a float32 absmax per block — the first moment with the signed dynamic map, the
/// second with the unsigned one — and expanded to f32 only for the update. Parameters with
/// fewer than 4096 elements (`min_8bit_size`) keep f32 moments and bitsandbytes' 32-bit update.
/// State: ~2 bytes per parameter instead of 8.
///
/// The update itself is `ComputeBackend.adamW8bitUpdate` (see `AdamW8bitStep`), on the trained
/// model's backend.
/// Against bitsandbytes 0.50.2 on CPU (five steps, OptimizerKindsTests): the 8-bit codes and
/// absmax are identical; parameters agree to 1-2 ulp (PyTorch takes √ from MKL, ±1 ulp).
public final class AdamW8bit: Optimizer, @unchecked Sendable {
    /// Parameters smaller than this keep 32-bit moments (bitsandbytes' `min_8bit_size`).
    public static let minQuantizedSize = 4096
    public static let blocksize = 256

    /// One parameter's moments.
    enum Moments {
        /// [N] codes and [B] absmax of m (signed map) and v (unsigned map).
        case quantized(m: Buffer<UInt8>, mAbsmax: Buffer<Float>, v: Buffer<UInt8>, vAbsmax: Buffer<Float>)
        /// [N] f32 m and v.
        case full(m: Buffer<Float>, v: Buffer<Float>)
    }

    public let parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)]
    public let hyper: AdamW.Hyperparameters
    public let paged: Bool
    public private(set) var step = 0
    let moments: [Moments]
    /// Where the update runs (the trained model's backend).
    public var backend: any ComputeBackend = CPUBackend.shared
    /// Each parameter's group (learning-rate factor, weight decay); nil: all at the learning rate
    /// with `hyper.weightDecay`.
    public var groups: [ParameterGroup]? {
        didSet { precondition(groups == nil || groups!.count == parameters.count, "one group per parameter") }
    }

    public init(parameters: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)], hyper: AdamW.Hyperparameters,
                paged: Bool = false) throws {
        self.parameters = parameters
        self.hyper = hyper
        self.paged = paged
        func make<T: BitwiseCopyable>(_ n: Int) throws -> Buffer<T> { paged ? try PagedMemory.buffer(count: n) : Buffer(count: n) }
        moments = try parameters.map { p in
            let n = p.value.count
            guard n >= Self.minQuantizedSize else { return .full(m: try make(n), v: try make(n)) }
            let blocks = (n + Self.blocksize - 1) / Self.blocksize
            return .quantized(m: try make(n), mAbsmax: try make(blocks), v: try make(n), vAbsmax: try make(blocks))
        }
    }

    public var name: String { paged ? "paged_adamw_8bit" : "adamw_8bit" }

    public var stateBytes: Int {
        moments.reduce(0) { total, m in
            switch m {
            case .quantized(let a, let b, let c, let d): total + a.byteCount + b.byteCount + c.byteCount + d.byteCount
            case .full(let a, let b): total + a.byteCount + b.byteCount
            }
        }
    }

    public func update(lr: Double) {
        step += 1
        for (k, p) in parameters.enumerated() {
            let g = groups?[k]
            let h = AdamW8bitStep(lr: lr * (g?.lrFactor ?? 1), beta1: hyper.beta1, beta2: hyper.beta2, epsilon: hyper.epsilon,
                                  weightDecay: g?.weightDecay ?? hyper.weightDecay, step: step)
            let state: AdamW8bitMoments
            switch moments[k] {
            case .full(let m, let v): state = .full(m: m.pointer, v: v.pointer)
            case .quantized(let mq, let ma, let vq, let va):
                state = .blockwise(m: mq.pointer, mAbsmax: ma.pointer, v: vq.pointer, vAbsmax: va.pointer, blocksize: Self.blocksize)
            }
            backend.adamW8bitUpdate(value: p.value.pointer, grad: p.grad.pointer, moments: state, count: p.value.count, step: h)
        }
    }

    /// Writes the state as bitsandbytes names it (`<name>.state1`, `.state2`: u8 codes or f32;
    /// `.absmax1`, `.absmax2`), metadata `step` and `optimizer`, atomically.
    public func save(to path: String) throws {
        var entries: [SafeTensorsWriter.Entry] = []
        for (k, p) in parameters.enumerated() {
            switch moments[k] {
            case .full(let m, let v):
                entries.append(.float32(name: p.name + ".state1", shape: [m.count], values: m.array))
                entries.append(.float32(name: p.name + ".state2", shape: [v.count], values: v.array))
            case .quantized(let mq, let ma, let vq, let va):
                entries.append(.init(name: p.name + ".state1", dtype: .u8, shape: [mq.count], bytes: mq.array))
                entries.append(.float32(name: p.name + ".absmax1", shape: [ma.count], values: ma.array))
                entries.append(.init(name: p.name + ".state2", dtype: .u8, shape: [vq.count], bytes: vq.array))
                entries.append(.float32(name: p.name + ".absmax2", shape: [va.count], values: va.array))
            }
        }
        try SafeTensorsWriter.write(entries, metadata: ["step": String(step), "optimizer": name], to: path)
    }

    public func load(from path: String) throws {
        let (file, st) = try openState(at: path)
        func restore<T: BitwiseCopyable>(_ name: String, _ dtype: SafeTensorsDType, into buffer: Buffer<T>) throws {
            guard let info = file.info(name) else {
                throw TrainError.badCheckpoint(path: path, reason: "no optimizer state \(name); was it saved by a run with other LoRA settings?")
            }
            guard info.dtype == dtype, info.elementCount == buffer.count else {
                throw TrainError.badCheckpoint(path: path, reason: "\(name) is \(info.dtype.rawValue) \(info.shape), expected \(dtype.rawValue) [\(buffer.count)]")
            }
            let bytes = try file.bytes(name)
            UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: bytes.baseAddress!, byteCount: buffer.byteCount)
        }
        for (k, p) in parameters.enumerated() {
            switch moments[k] {
            case .full(let m, let v):
                try restore(p.name + ".state1", .f32, into: m); try restore(p.name + ".state2", .f32, into: v)
            case .quantized(let mq, let ma, let vq, let va):
                try restore(p.name + ".state1", .u8, into: mq); try restore(p.name + ".absmax1", .f32, into: ma)
                try restore(p.name + ".state2", .u8, into: vq); try restore(p.name + ".absmax2", .f32, into: va)
            }
        }
        step = st
    }
}
