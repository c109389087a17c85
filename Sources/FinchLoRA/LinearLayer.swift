import FinchCore

/// What one pass tells every layer it calls: the state of this call only, passed down from the
/// model's entry (forward, forwardBackward, evaluate, the batched inference call) through the
/// blocks to each linear. Nothing of it is stored on a layer.
public struct PassContext: Sendable {
    /// The backend the layers compute on (a model's passes carry the model's `backend`).
    public var backend: any ComputeBackend
    /// Training: the dropout key of the micro-batch (nil = evaluation or inference, no dropout).
    /// An adapter's mask is a function of this key and its layer's name, so backward and a
    /// recomputed forward see the same mask.
    public var dropoutKey: UInt64?
    /// Inference with a different adapter per run of rows (batched serving): each span's rows
    /// use its adapter (nil: the base layer alone) instead of the active one; rows outside every
    /// span use the base layer. nil: every row uses the active adapter.
    public var rowAdapters: [AdapterSpan]?

    public init(backend: any ComputeBackend, dropoutKey: UInt64? = nil, rowAdapters: [AdapterSpan]? = nil) {
        self.backend = backend; self.dropoutKey = dropoutKey; self.rowAdapters = rowAdapters
    }

    /// The CPU backend, no dropout, the active adapter on every row: for calling a layer by itself
    /// (a model's passes carry its own backend instead).
    public static let plain = PassContext(backend: CPUBackend.shared)
}

/// The adapter of a run of consecutive rows in a batched inference call (see `PassContext.rowAdapters`).
public struct AdapterSpan: Sendable, Equatable {
    public var rows: Range<Int>
    /// nil: the base layer alone.
    public var adapter: String?
    public init(rows: Range<Int>, adapter: String?) { self.rows = rows; self.adapter = adapter }
}

/// Anything a model calls as a linear layer: a frozen weight, or a weight wrapped with adapters.
/// Models hold `any LinearLayer`, so LoRA is added by swapping the layer, not by editing the model.
public protocol LinearLayer: AnyObject, Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// The frozen weight under the layer (the layer itself when it is one).
    var frozenWeight: LinearWeight { get }
    /// Whether a call over `rows` rows wants x as bf16 (so callers can share one conversion).
    func wantsBF16Input(rows: Int) -> Bool
    /// y[M, out] (+)= layer(x[M, in]), with the pass's `context` (dropout key, per-row adapters).
    func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                 rows: Int, accumulate: Bool, scratch: Scratch, context: PassContext)
    /// Backward of `forward`: dx[M, in] (+)= ∂y/∂x · dy (`accumulate: false` overwrites), and the
    /// gradients of whatever trains in the layer added to its gradient buffers. `x` is the
    /// forward's input; dy [M, out]; `context` the forward's. Frozen weights get no gradient.
    func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                  rows: Int, accumulate: Bool, scratch: Scratch, context: PassContext)
}

extension LinearWeight: LinearLayer {
    public var frozenWeight: LinearWeight { self }

    /// A frozen weight has no adapter: the product on the context's backend.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                        rows: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        context.backend.linearForward(self, y: y, x: x, xBF16: xBF16, rows: rows, accumulate: accumulate, scratch: scratch)
    }

    public func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         rows: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        context.backend.linearBackwardInput(self, dx: dx, dy: dy, rows: rows, accumulate: accumulate, scratch: scratch)
    }
}
