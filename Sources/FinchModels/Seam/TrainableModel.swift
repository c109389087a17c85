import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import FinchTokenizer

// Dimension letters: R selected rows, V vocabulary.

/// The seam between the model families and everything that uses a model (generator, trainer,
/// memory plan, merge / export, quantize, the CLI): nothing above it names a family's type.
///
/// `TrainableModel` is what the trainer needs (packed-sequence forward / backward into the
/// adapters, the loss, memory accounting, LoRA slots); `LanguageModel` adds inference over
/// sequence states (`start` / `step`) and export, for every kind; `CausalLM` and `Seq2SeqLM`
/// are its decoder-only and encoder-decoder refinements. Models are not thread-safe: one call at a time.
public protocol TrainableModel: LoRAHost {
    /// The family's registry name (`llama`, `qwen2`, …).
    var architecture: String { get }
    /// V: entries of the vocabulary.
    var vocabSize: Int { get }
    /// How the frozen weights are stored.
    var dtype: WeightDType { get }
    /// Where the model computes (the CPU kernels, or the reference backend); every pass runs on
    /// it. Set at load (`LoadedModel.load(backend:)`, `FINCH_BACKEND`) or between passes.
    var backend: any ComputeBackend { get set }

    /// Forward and backward over one micro-batch of packed sequences: returns the summed loss and
    /// adds `lossScale` · ∂(summed loss)/∂θ to the gradients of the active adapter's parameters
    /// (`lossScale` nil = 1 / this batch's counted tokens, the gradient of the mean loss; with
    /// gradient accumulation pass 1 / the count of all accumulated micro-batches). `dropoutKey`
    /// keys the adapters' dropout masks (nil = no dropout). With `checkpointing`, each block is
    /// recomputed in backward instead of saved: less memory, identical gradients.
    func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions) throws -> LossSum
    /// The summed loss of a batch without gradients (evaluation; adapters' dropout off).
    func evaluate(_ batch: [TrainingSequence]) throws -> LossSum
    /// Forward and backward under a sequence-level objective (preference training): the forward
    /// gives every sequence's summed label log-probability, `objective` turns them into ∂loss/∂(each),
    /// and backward adds that gradient to the active adapter's gradients; the same single pass as
    /// `forwardBackward` (`options.lossScale` is unused: the objective's gradient carries the scale).
    /// Returns the log-probabilities the objective saw.
    func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions,
                         objective: SequenceObjective) throws -> SequenceLogProbs
    /// Every sequence's summed label log-probability without gradients (reference passes,
    /// evaluation; adapters' dropout off), with the adapters as they are set.
    func sequenceLogProbs(_ batch: [TrainingSequence]) throws -> SequenceLogProbs
    /// Frees the training buffers (kept between steps otherwise).
    func releaseTrainingMemory()
    /// What a training pass over `rows` packed rows allocates beyond weights and adapters.
    func trainingActivationBytes(rows: Int, checkpointing: Bool, loraRank: Int) -> TrainingActivationBytes

    /// Bytes held by the weights.
    var weightBytes: Int { get }
    /// The frozen output head [V, C] (the embedding when they are tied).
    var outputHead: LinearWeight { get }
    /// Values of the frozen weights (parameters).
    var parameterCount: Int { get }
    /// The most memory loading this model holds at once, beyond the process before loading, when
    /// its weights are read from a source storing `sourceBytesPerValue` bytes per value.
    func loadPeakBytes(sourceBytesPerValue: Double) -> Int
    /// What training this model does differently from transformers' training mode (shown when a run starts).
    var trainingCaveats: [String] { get }
    /// A mixture of experts: the experts' share of `weightBytes` (nil for other models).
    var expertWeightBytes: ExpertWeightBytes? { get }
}

/// A mixture of experts' expert weights, as `--dry-run` reports them.
public struct ExpertWeightBytes: Sendable, Equatable {
    /// Every sparse layer's experts (gate, up and down; not the routers or a shared expert).
    public var all: Int
    /// What one token reads of them: top-k of each layer's experts.
    public var perToken: Int
    /// Whether they stay in a GGUF file's mapped blocks (paged in as they are read) rather than copied in.
    public var mapped: Bool
}

extension TrainableModel {
    public var expertWeightBytes: ExpertWeightBytes? { nil }

    /// Whether any linear the adapters can wrap is held quantized (4 bits or int8).
    public var isQuantized: Bool {
        linearSlots.contains { if case .quantized = baseWeight($0.get()).storage { true } else { false } }
    }

    /// How the adapters' base linears are held, in a few words: "f32", "bf16", "Q4_K blocks +
    /// Q6_K blocks (products in f32)", "nf4 (products in bf16)", "int8 (products in f32)".
    public var weightSummary: String {
        var kinds: [String] = [], computes: Set<WeightDType> = []
        for s in linearSlots {
            let kind: String
            switch baseWeight(s.get()).storage {
            case .f32: kind = "f32"
            case .bf16: kind = "bf16"
            case .quantized(let q, let compute):
                computes.insert(compute)
                switch q {
                case let b as GGUFBlockMatrix: kind = "\(b.type.name) blocks"
                case let f as FourBitTensor: kind = f.type.rawValue
                case is Int8Tensor: kind = "int8"
                default: kind = "quantized"
                }
            }
            if !kinds.contains(kind) { kinds.append(kind) }
        }
        let int8 = linearSlots.contains { baseWeight($0.get()).int8 != nil }
        let products = int8 ? " (int8 products)"
            : computes.isEmpty ? "" : " (products in \(computes.map(\.rawValue).sorted().joined(separator: ", ")))"
        return kinds.joined(separator: " + ") + products
    }

    /// Makes every base linear the adapters can wrap, and the output head, multiply in integers
    /// (`Int8Product`), or in their own precision again. (A tied embedding still looks its rows up
    /// in its own values.)
    public func useInt8Products(_ on: Bool = true) {
        for s in linearSlots { baseWeight(s.get()).useInt8Products(on) }
        outputHead.useInt8Products(on)
    }

    /// Replaces every quantized linear by its dequantized values stored as `dtype` (before an
    /// adapter is attached: merging into full precision instead of requantizing).
    /// - Throws: ``ModelError/adapterProblem(_:)`` when an adapter is attached to a quantized layer
    ///   (checked first, so a refused call leaves every layer as it was).
    public func dequantizeLinears() throws {
        let slots = linearSlots
        for s in slots where !(s.get() is LinearWeight) {
            if case .quantized = baseWeight(s.get()).storage {
                throw ModelError.adapterProblem("an adapter is attached to a quantized layer; dequantize the base before loading an adapter")
            }
        }
        for s in slots {
            guard let w = s.get() as? LinearWeight, case .quantized = w.storage else { continue }
            s.set(LinearWeight(outFeatures: w.outFeatures, inFeatures: w.inFeatures, values: w.floatValues(), dtype: dtype))
        }
    }

    /// `forwardBackward` of the mean loss, without dropout or checkpointing.
    @discardableResult
    public func forwardBackward(_ batch: [TrainingSequence], lossScale: Float? = nil, checkpointing: Bool = false,
                                dropoutKey: UInt64? = nil) throws -> LossSum {
        try forwardBackward(batch, options: TrainingPassOptions(lossScale: lossScale, checkpointing: checkpointing,
                                                               dropoutKey: dropoutKey))
    }
}

/// Settings of one training pass (see `TrainableModel.forwardBackward`).
public struct TrainingPassOptions: Sendable {
    public var lossScale: Float?
    public var checkpointing: Bool
    public var dropoutKey: UInt64?
    /// The weight of a mixture of experts' load-balancing loss gradient (its `router_aux_loss_coef` times
    /// this): 1 for a micro-batch's own loss (as transformers adds it), a preference objective's scale there.
    public var auxLossScale: Float = 1
    public init(lossScale: Float? = nil, checkpointing: Bool = false, dropoutKey: UInt64? = nil) {
        self.lossScale = lossScale; self.checkpointing = checkpointing; self.dropoutKey = dropoutKey
    }
}

/// One training sequence: its tokens and per-token labels (usually the tokens themselves, with
/// -100 where no loss is taken, e.g. on the prompt). Labels are not shifted: the loss of row t
/// predicts the label of token t + 1, as Hugging Face's causal-LM loss does.
///
/// For an encoder-decoder model (T5) `source` holds the encoder's tokens and `tokens` the
/// decoder's: the decoder start id followed by the target (ending with EOS), labels = the same
/// with -100 at the start id, so that row t, fed target[..<t], predicts target[t].
public struct TrainingSequence: Sendable, Equatable {
    public var tokens: [Int32]
    public var labels: [Int32]
    /// The encoder's input (encoder-decoder models only; nil for decoder-only models).
    public var source: [Int32]?
    public init(tokens: [Int32], labels: [Int32], source: [Int32]? = nil) {
        self.tokens = tokens; self.labels = labels; self.source = source
    }
    /// A sequence trained on every token (labels = tokens).
    public init(tokens: [Int32]) { self.init(tokens: tokens, labels: tokens) }
    /// Positions that take a loss after the causal shift (labels at positions 1... that are
    /// not -100). A sequence with none teaches nothing.
    public var lossTokenCount: Int {
        var n = 0
        for i in labels.indices.dropFirst() where labels[i] != CrossEntropy.ignoreIndex { n += 1 }
        return n
    }
}

/// A summed loss: `sum` of the counted tokens' cross-entropies, and their `count`.
public struct LossSum: Sendable, Equatable {
    public var sum: Double
    public var count: Int
    public init(sum: Double = 0, count: Int = 0) { self.sum = sum; self.count = count }
    /// The mean loss (NaN when nothing counted).
    public var mean: Double { count == 0 ? .nan : sum / Double(count) }
    public static func + (a: LossSum, b: LossSum) -> LossSum { LossSum(sum: a.sum + b.sum, count: a.count + b.count) }
}

/// Bytes of a training pass beyond the weights and the adapter: what it keeps between forward
/// and backward, and its largest temporaries.
public struct TrainingActivationBytes: Sendable, Equatable {
    /// The training workspace: every block's saved activations (one block's worth under gradient
    /// checkpointing), the residual stream at each block's input, and the backward buffers.
    public var saved: Int
    /// The largest temporaries alive during a step: the loss's logits chunk, the LoRA layers'
    /// scratch, a 4-bit layer expanded to the compute type, the bf16 copy of an input.
    public var transient: Int
    public var total: Int { saved + transient }
}
