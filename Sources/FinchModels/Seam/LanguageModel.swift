import FinchCore
import FinchLoRA
import FinchTokenizer

// Dimension letters: R selected rows, V vocabulary.

/// What a model does with a prompt: decides how prompts become tokens and what the decoder reads first.
public enum ModelKind: String, Sendable, CaseIterable {
    /// Decoder-only (LLaMA, Qwen, Gemma, GPT-2, …): the prompt is the start of the decoded sequence.
    case decoderOnly = "decoder-only"
    /// Encoder-decoder (T5): the prompt is the encoder's source; the decoder starts from its start id.
    case encoderDecoder = "encoder-decoder"
}

/// The state one sequence keeps between inference steps: a key/value cache, or T5's encoder
/// output with its decoder cache. Made by `LanguageModel.start`, read and grown by `step`.
public protocol SequenceState: AnyObject {
    /// Tokens the decoder has read so far.
    var length: Int { get }
    /// Bytes the state holds.
    var byteCount: Int { get }
    /// Whether `start` can reuse this state's memory for another sequence (a key/value cache can;
    /// an encoder-decoder state is tied to its source).
    var isRecyclable: Bool { get }
}

/// A sequence ready to generate: its state and the tokens the decoder reads first (a decoder-only
/// model's prompt; T5's decoder start id, its source already encoded into the state).
public struct StartedSequence {
    public let state: any SequenceState
    public let input: [Int]
    public init(state: any SequenceState, input: [Int]) { self.state = state; self.input = input }
}

/// One sequence's input to a step: new decoder tokens read after what its state holds.
public struct StepInput {
    public var tokens: [Int]
    public var state: any SequenceState
    public init(tokens: [Int], state: any SequenceState) { self.tokens = tokens; self.state = state }
}

/// The inference seam every kind of model implements, and the only one generation, serving and
/// evaluation use: `start` turns prompts into sequence states (an encoder-decoder model encodes
/// them here), `step` runs new tokens of many sequences in one pass and returns their logits.
/// Nothing above it asks which kind a model is; `kind` and `PromptFormat` hold the differences.
public protocol LanguageModel: TrainableModel {
    var kind: ModelKind { get }
    /// Token ids that end a sequence, from the model's config.
    var eosTokenIds: [Int] { get }
    /// Decoder positions the model was trained to attend over (`max_position_embeddings`,
    /// `n_positions`; T5's relative positions have no limit: `Int.max`).
    var maxPositions: Int { get }
    /// Starts one sequence per prompt with room for `capacity` generated tokens (states grow when
    /// a sequence runs longer). `reusing`: states the caller no longer needs, which the model may
    /// recycle (their memory) instead of allocating. `adapters` (nil: the active adapter): each
    /// prompt's own adapter (nil entry: the base model), for a model that reads the prompt here
    /// (an encoder-decoder model encodes it).
    func start(_ prompts: [[Int]], capacity: Int, reusing: [any SequenceState], adapters: [String?]?) throws -> [StartedSequence]
    /// Reads the new tokens of every sequence in one pass, appending them to the sequences'
    /// states, and returns the selected logits [R, V]. `adapters` (nil: the active adapter) gives
    /// each run of consecutive rows its own adapter, rows counted over the inputs in order.
    func step(_ inputs: [StepInput], logits: LogitsSelection, adapters: [AdapterSpan]?) throws -> Logits
    /// Writes the model (an active adapter folded in, or a merged one) as a Hugging Face
    /// directory transformers loads.
    func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, options: HuggingFaceExportOptions) throws
        -> HuggingFaceExport
}

extension LanguageModel {
    public func start(_ prompts: [[Int]], capacity: Int) throws -> [StartedSequence] {
        try start(prompts, capacity: capacity, reusing: [], adapters: nil)
    }

    /// `start` with the active adapter.
    public func start(_ prompts: [[Int]], capacity: Int, reusing: [any SequenceState]) throws -> [StartedSequence] {
        try start(prompts, capacity: capacity, reusing: reusing, adapters: nil)
    }

    public func step(_ inputs: [StepInput], logits: LogitsSelection = .last) throws -> Logits {
        try step(inputs, logits: logits, adapters: nil)
    }

    @discardableResult
    public func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, dtype: ExportDType = .f32,
                                maxShardBytes: Int? = nil, overwrite: Bool = false,
                                dequantize: Bool = false) throws -> HuggingFaceExport {
        try saveHuggingFace(to: directory, tokenizer: tokenizer,
                            options: HuggingFaceExportOptions(dtype: dtype, maxShardBytes: maxShardBytes,
                                                              overwrite: overwrite, dequantize: dequantize))
    }

    /// The logits [V] of the token after each prompt (row `rows[s].lowerBound` for prompt s), in
    /// one pass: what a choice among single tokens reads (MMLU, the judge).
    public func nextTokenLogits(_ prompts: [[Int]]) throws -> Logits {
        let started = try start(prompts, capacity: 1)
        return try step(started.map { StepInput(tokens: $0.input, state: $0.state) }, logits: .last)
    }

    /// Teacher-forced logits of one sequence: the decoder reads what `start` gives it for `prompt`
    /// (a decoder-only model's prompt; T5's start id, the prompt encoded) and then `tokens`.
    /// Returns the tokens the decoder read and one row of logits [V] per token. What merge,
    /// quantize and export compare before and after writing a model.
    public func teacherForcedLogits(prompt: [Int], then tokens: [Int] = []) throws -> (inputs: [Int], logits: [[Float]]) {
        let s = try start([prompt], capacity: tokens.count)[0]
        let inputs = s.input + tokens
        let l = try step([StepInput(tokens: inputs, state: s.state)], logits: .all)
        return (inputs, (0..<inputs.count).map { Array(l.row($0)) })
    }

    /// Natural-log likelihoods of each continuation token given its context, teacher-forced: the
    /// scoring behind perplexity and log-likelihood multiple choice, for every kind. A decoder-only
    /// model reads `context + continuation` (the context must not be empty: its first token is
    /// never predicted); an encoder-decoder model encodes the context and decodes the
    /// continuation from the start id. Returns one array per pair, `continuation.count` long.
    public func logLikelihoods(_ pairs: [(context: [Int], continuation: [Int])]) throws -> [[Double]] {
        let live = pairs.indices.filter { !pairs[$0].continuation.isEmpty }
        var out = pairs.map { _ in [Double]() }
        guard !live.isEmpty else { return out }
        let started = try start(live.map { pairs[$0].context }, capacity: live.map { pairs[$0].continuation.count }.max()!)
        // Each sequence reads its first input and the continuation but its last token; row j of
        // its logits predicts the token after the j-th token read.
        let inputs = zip(live, started).map { i, s in StepInput(tokens: s.input + pairs[i].continuation.dropLast(), state: s.state) }
        let logits = try step(inputs, logits: .all)
        for (slot, i) in live.enumerated() {
            let cont = pairs[i].continuation, first = logits.rows[slot].lowerBound + started[slot].input.count - 1
            out[i] = cont.indices.map { j in
                let row = logits.row(first + j)
                return Double(row[cont[j]]) - Double(CrossEntropy.logSumExp(row))
            }
        }
        return out
    }
}

/// Which rows' logits a step computes.
public enum LogitsSelection: Sendable {
    /// Every new token of every sequence.
    case all
    /// The last new token of each sequence (what generation needs).
    case last
}

/// Logits of a step: rows [R, V], sequence s owning `rows[s]`.
public struct Logits {
    public let values: Buffer<Float>
    public let vocabSize: Int
    public let rows: [Range<Int>]

    /// Logits of row r (a view valid while `values` lives).
    public func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: values.pointer + r * vocabSize, count: vocabSize)
    }
}
