import Foundation
// Dimension letters: M rows of a product, N columns, K the summed dimension; R rows (tokens),
// C channels, H query heads, G key/value heads, D head dim, F features of an elementwise op,
// V vocabulary, O output features.

/// Where the model, LoRA, quantized and optimizer code run their arithmetic: matrix products
/// (f32, and the bf16 and quantized weight paths of `LinearWeight`), the transformer kernels with
/// their backward, the loss, elementwise ops, reductions and the optimizer's update. Shaped after
/// candle's `BackendStorage`: one protocol, one implementation per device; callers name the op,
/// the backend decides how it runs.
///
/// Operands are host memory (`Buffer` pointers) laid out as the kernels document them; a
/// backend may not keep a pointer past the call. Backends are stateless (their temporaries live
/// in the caller's `Scratch` or in the call), so one instance serves every model of a process.
///
/// - `CPUBackend`: Finch's kernels (SIMD C kernels, oneDNN / OpenBLAS GEMMs, threads).
/// - `ReferenceBackend`: each op from its definition in plain Swift, f64 accumulation, one
///   thread, no SIMD: what the CPU kernels are checked against, op by op and model by model.
public protocol ComputeBackend: AnyObject, Sendable {
    var kind: BackendKind { get }

    // MARK: Buffers

    /// A zeroed f32 buffer of `count` values this backend computes on.
    func makeBuffer(count: Int) -> Buffer<Float>

    // MARK: Matrix products

    /// C [M, N] (+)= op(A) · op(B) in f32 (layouts and transposes as `GEMM.f32`).
    func matmul(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, aTransposed: Bool,
                b: UnsafePointer<Float>, ldb: Int, bTransposed: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                accumulate: Bool)
    /// y [M, O] (+)= x [M, I] · Wᵀ through a frozen weight of any storage (f32, bf16: x rounded to
    /// bf16, f32 accumulation; quantized: its compute type). `xBF16`: x already as bf16, or nil.
    func linearForward(_ w: LinearWeight, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                       xBF16: UnsafePointer<BF16Bits>?, rows: Int, accumulate: Bool, scratch: Scratch)
    /// dx [M, I] (+)= dy [M, O] · W (the frozen weight's backward; bf16: dy rounded to bf16).
    func linearBackwardInput(_ w: LinearWeight, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int,
                             accumulate: Bool, scratch: Scratch)

    // MARK: Norms

    /// out [R, C] = x / √(mean(x²) + eps) · weight; `rstd` [R] (optional) for backward.
    func rmsNormForward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                        weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float)
    /// dx [R, C] += ∂out/∂x · dout; dweight [C] (optional) += Σ dout · x · rstd.
    func rmsNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                         x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         rows: Int, channels: Int)
    /// out [R, C] = (x − mean) / √(var + eps) · weight + bias; `stats` [R, 2] (optional) mean and 1/√(var + eps).
    func layerNormForward(out: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                          weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float)
    /// dx [R, C] += ∂out/∂x · dout; dweight, dbias [C] (optional) += their gradients.
    func layerNormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int, channels: Int)

    // MARK: Rotary embedding

    /// Rotates x [R, H, D] in place by the table's angles ("rotate half" pairs i, i + D/2);
    /// `inverse` rotates by the negative angle, which is also the backward.
    func ropeApply(_ rope: RoPE, x: UnsafeMutablePointer<Float>, heads: Int, table: RoPE.Table, inverse: Bool)

    // MARK: Activations

    /// y [N] = act(x [N]) for the activations without a fused kernel (see `Activation`). y may be x.
    func activationForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, activation: Activation)
    /// dx [N] += dy · act′(x).
    func activationBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                            activation: Activation)
    /// out [N] = a [N] · b [N], elementwise (out may be a or b).
    func multiply(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int)
    /// out [R, C] (+)= x [R, C] · scale [C] per column (out may be x): DoRA's magnitude rescale.
    func scaleColumns(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, scale: UnsafePointer<Float>, rows: Int,
                      columns: Int, accumulate: Bool)
    /// out [C] += Σ_rows a [R, C] · b [R, C]: a per-column dot product (DoRA's magnitude gradient).
    func columnDots(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, columns: Int)
    /// h [F] = silu(gate) · up.
    func swiGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int)
    /// dgate [F] += dh · up · silu'(gate), dup [F] += dh · silu(gate).
    func swiGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int)
    /// h [F] = gelu_tanh(gate) · up.
    func geGLUForward(h: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int)
    /// dgate [F] += dh · up · gelu_tanh'(gate), dup [F] += dh · gelu_tanh(gate).
    func geGLUBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                       gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int)
    /// y [F] = gelu(x) (y may be x).
    func geluForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, approximation: GELU.Approximation)
    /// dx [F] += dy · gelu'(x).
    func geluBackward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int,
                      approximation: GELU.Approximation)

    // MARK: Attention

    /// Causal grouped-query attention of new rows over key/value caches (see `Attention.forward`).
    func attentionForward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, segments: [AttentionSegment],
                          heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int?)
    /// Causal grouped-query attention of packed sequences, saving the log-sum-exp [R, H] (see
    /// `Attention.trainingForward`).
    func attentionTrainingForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>,
                                  q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                  sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int?)
    /// Backward of `attentionTrainingForward`, accumulating into dq, dk, dv.
    func attentionTrainingBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                   dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                   logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                   v: UnsafePointer<Float>, sequences: [Range<Int>], heads: Int, kvHeads: Int,
                                   headDim: Int, scale: Float, window: Int?)
    /// One sequence's attention with an additive bias [H, Q, K] (T5; see `BiasedAttention.forward`).
    func biasedAttentionForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>?,
                                q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, shape: BiasedAttention.Shape)
    /// Backward of `biasedAttentionForward`, accumulating into dq, dk, dv (the bias is frozen).
    func biasedAttentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                 dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
                                 logsumexp: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                 v: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape: BiasedAttention.Shape)

    // MARK: Loss

    /// The LM head (x [R, C] · headᵀ) and the cross-entropy of rows whose target is not -100:
    /// their loss sum and count (see `CrossEntropy.linearForward`); losses [R] (optional): every
    /// row's loss as stored in f32, 0 where the target is -100.
    func crossEntropyForward(x: UnsafePointer<Float>, head: LinearWeight, targets: UnsafePointer<Int32>, rows: Int,
                             losses: UnsafeMutablePointer<Float>?, scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int)
    /// As `crossEntropyForward`, and dx [R, C] += ∂(scale · Σ losses)/∂x; with `headGrad` [V, C]
    /// (a trained head: PEFT's `modules_to_save`), also headGrad += ∂(scale · Σ losses)/∂head.
    func crossEntropyForwardBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight,
                                     targets: UnsafePointer<Int32>, rows: Int, scale: Float, losses: UnsafeMutablePointer<Float>?,
                                     headGrad: UnsafeMutablePointer<Float>?,
                                     scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int)

    // MARK: Elementwise

    /// out [F] (+)= x · mask / (1 − p), the mask Dropout's counter-based hash of (key, i)
    /// (`accumulate`: the backward into an existing gradient). out may alias x when not accumulating.
    func dropout(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, p: Float, key: UInt64,
                 accumulate: Bool)
    /// y [F] += x.
    func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int)
    /// x [F] *= s.
    func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by s: Float)
    /// y [R, O] += bias [O] on every row.
    func biasForward(y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, features: Int)
    /// dbias [O] += Σ_rows dy [R, O].
    func biasBackward(dbias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, features: Int)

    // MARK: Reductions and the optimizer

    /// Σ x² over `count` values, in f64 (a gradient norm's square).
    func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double
    /// One AdamW update of `count` parameters (see `AdamWStep`), in place on value and both moments.
    func adamWUpdate(value: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>, expAvg: UnsafeMutablePointer<Float>,
                     expAvgSq: UnsafeMutablePointer<Float>, count: Int, step: AdamWStep)
    /// One step of bitsandbytes' 8-bit AdamW (see `AdamW8bitStep`) on `count` parameters, in
    /// place on value and moments.
    func adamW8bitUpdate(value: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>, moments: AdamW8bitMoments,
                         count: Int, step: AdamW8bitStep)
}

/// The constants of one AdamW step (PyTorch's `torch.optim.AdamW`, single-tensor path):
/// `p ← p·decay`, `m ← m + (1 − β1)(g − m)`, `v ← β2·v + (1 − β2)·g²`,
/// `p ← p − stepSize · m / (√v / bc2 + ε)` with stepSize = lr / (1 − β1ᵗ), bc2 = √(1 − β2ᵗ).
public struct AdamWStep: Sendable, Equatable {
    public var decay: Float, oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float
    public var stepSize: Float, bc2: Float, epsilon: Float
    public init(decay: Float, oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float, stepSize: Float, bc2: Float,
                epsilon: Float) {
        self.decay = decay; self.oneMinusBeta1 = oneMinusBeta1; self.beta2 = beta2; self.oneMinusBeta2 = oneMinusBeta2
        self.stepSize = stepSize; self.bc2 = bc2; self.epsilon = epsilon
    }
}

/// One parameter's moments in bitsandbytes' 8-bit AdamW.
public enum AdamW8bitMoments {
    /// m and v [N] as 8-bit codes (m with `DynamicMap.signed`, v with `DynamicMap.unsigned`) in
    /// blocks of `blocksize`, with an f32 absmax [⌈N / blocksize⌉] each.
    case blockwise(m: UnsafeMutablePointer<UInt8>, mAbsmax: UnsafeMutablePointer<Float>,
                   v: UnsafeMutablePointer<UInt8>, vAbsmax: UnsafeMutablePointer<Float>, blocksize: Int)
    /// m and v [N] in f32 (parameters below bitsandbytes' `min_8bit_size`).
    case full(m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)
}

/// The constants of one step of bitsandbytes' 8-bit AdamW (`bnb.optim.AdamW8bit`, CPU update
/// `_optimizer_update_8bit_blockwise_cpu`), per element, in f32 (FMA where PyTorch's vectorized
/// kernels fuse): m ← m·β1 + (1−β1)·g, v ← v·β2 + (1−β2)·g·g, p ← p·(1 − lr·λ); blockwise moments:
/// p ← p + (−lr/c1 · m) / (√v / c2 + ε), then m and v requantized; f32 moments (bitsandbytes'
/// 32-bit update): p ← p − lr·c2/c1 · m / (√v + ε·c2); c1 = 1 − β1ᵗ, c2 = √(1 − β2ᵗ).
public struct AdamW8bitStep: Sendable, Equatable {
    public var beta1, oneMinusBeta1, beta2, oneMinusBeta2: Float
    /// 1 − lr·λ, or nil without weight decay.
    public var decay: Float?
    /// −lr/c1, c2 and ε (blockwise moments); −lr·c2/c1 and ε·c2 (f32 moments).
    public var stepSize, bc2, epsilon: Float
    public var fullStepSize, fullEpsilon: Float

    /// The constants of step `t` (from 1).
    public init(lr: Double, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double, step t: Int) {
        let c1 = 1 - pow(beta1, Double(t)), c2 = (1 - pow(beta2, Double(t))).squareRoot()
        self.beta1 = Float(beta1); oneMinusBeta1 = Float(1 - beta1); self.beta2 = Float(beta2); oneMinusBeta2 = Float(1 - beta2)
        decay = weightDecay > 0 ? Float(1 - lr * weightDecay) : nil
        stepSize = Float(-lr / c1); bc2 = Float(c2); self.epsilon = Float(epsilon)
        fullStepSize = Float(-lr * c2 / c1); fullEpsilon = Float(epsilon * c2)
    }
}

extension ComputeBackend {
    /// `crossEntropyForwardBackward` with a frozen head (no head gradient).
    public func crossEntropyForwardBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, head: LinearWeight,
                                            targets: UnsafePointer<Int32>, rows: Int, scale: Float, losses: UnsafeMutablePointer<Float>?,
                                            scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        try crossEntropyForwardBackward(dx: dx, x: x, head: head, targets: targets, rows: rows, scale: scale, losses: losses,
                                        headGrad: nil, scratch: scratch)
    }

    /// y [M, O] (+)= x [M, I] · weightᵀ for a trainable f32 weight [O, I] (LoRA's factors).
    public func denseForward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             rows m: Int, outFeatures o: Int, inFeatures i: Int, accumulate: Bool) {
        matmul(m: m, n: o, k: i, a: x, lda: i, aTransposed: false, b: weight, ldb: i, bTransposed: true,
               c: y, ldc: o, accumulate: accumulate)
    }

    /// dx [M, I] (+)= dy [M, O] · weight [O, I].
    public func denseBackwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                   rows m: Int, outFeatures o: Int, inFeatures i: Int, accumulate: Bool) {
        matmul(m: m, n: i, k: o, a: dy, lda: o, aTransposed: false, b: weight, ldb: i, bTransposed: false,
               c: dx, ldc: i, accumulate: accumulate)
    }

    /// dweight [O, I] (+)= dyᵀ [O, M] · x [M, I].
    public func denseBackwardWeight(dweight: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                    rows m: Int, outFeatures o: Int, inFeatures i: Int, accumulate: Bool) {
        matmul(m: o, n: i, k: m, a: dy, lda: o, aTransposed: true, b: x, ldb: i, bTransposed: false,
               c: dweight, ldc: i, accumulate: accumulate)
    }

    /// Backward of `ropeApply`, in place: the rotation by the negative angle.
    public func ropeBackward(_ rope: RoPE, dx: UnsafeMutablePointer<Float>, heads: Int, table: RoPE.Table) {
        ropeApply(rope, x: dx, heads: heads, table: table, inverse: true)
    }
}

/// The compute backends Finch has, by the name `FINCH_BACKEND` and `--backend` take.
public enum BackendKind: String, Sendable, CaseIterable, Codable {
    /// Finch's kernels: SIMD, oneDNN / OpenBLAS, every core.
    case cpu
    /// Plain Swift from each op's definition, f64 accumulation (slow; for checking).
    case reference

    /// The backend of this kind (one shared instance each).
    public var backend: any ComputeBackend {
        switch self {
        case .cpu: CPUBackend.shared
        case .reference: ReferenceBackend.shared
        }
    }

    /// The kind a name gives; `source` says where the name came from (for the error).
    /// - Throws: ``CoreError/unknownBackend(name:source:)`` naming it and the valid names.
    public static func named(_ name: String, source: String) throws(CoreError) -> BackendKind {
        guard let kind = BackendKind(rawValue: name.lowercased()) else { throw .unknownBackend(name: name, source: source) }
        return kind
    }

    /// `FINCH_BACKEND` when set (and not empty), else `.cpu`.
    /// - Throws: ``CoreError/unknownBackend(name:source:)`` when the variable names no backend.
    public static func fromEnvironment() throws(CoreError) -> BackendKind {
        guard let v = getenvString("FINCH_BACKEND"), !v.isEmpty else { return .cpu }
        return try named(v, source: "FINCH_BACKEND")
    }

    /// The backend to use: `explicit` when given (a `--backend` option, a load option), else
    /// `FINCH_BACKEND`, else the CPU.
    public static func resolve(_ explicit: BackendKind?) throws(CoreError) -> any ComputeBackend {
        if let explicit { return explicit.backend }
        return try fromEnvironment().backend
    }
}
