import FinchCore
import FinchLoRA
import FinchTokenizer

// Dimension letters: R selected rows, V vocabulary.

/// An encoder-decoder language model (T5): the source runs through the encoder once, then the
/// decoder reads from its start id with its own cache and cross-attention to the encoder's output.
/// Its `start` / `step` (the `LanguageModel` seam) are `encode` / `decode`. Shares `TrainableModel`
/// (training pairs carry the source in `TrainingSequence.source`).
public protocol Seq2SeqLM: LanguageModel {
    /// The id the decoder starts from (`decoder_start_token_id`).
    var decoderStartTokenId: Int { get }
    /// Runs the encoder over each source and returns one cache per source. `adapters` (nil: the active
    /// adapter): each source's own adapter (nil entry: the base model), in the encoder and in the
    /// decoder's cross-attention keys and values computed here.
    func encode(_ sources: [[Int]], capacity: Int, adapters: [String?]?) throws -> [EncoderDecoderCache]
    /// Runs new decoder tokens of each sequence after what its cache holds; the selected logits [R, V].
    /// `context.rowAdapters` gives runs of the new tokens their own adapter (as `CausalLM.forward`).
    func decode(_ inputs: [(tokens: [Int], cache: EncoderDecoderCache)], logits: LogitsSelection,
                context: PassContext) throws -> Logits
}

extension Seq2SeqLM {
    public var kind: ModelKind { .encoderDecoder }

    /// Encodes every source in one pass (each with its adapter); each sequence then reads the decoder start id first.
    public func start(_ prompts: [[Int]], capacity: Int, reusing: [any SequenceState], adapters: [String?]?) throws -> [StartedSequence] {
        if let i = prompts.firstIndex(where: \.isEmpty) { throw ModelError.emptyPrompt(index: i) }
        return try encode(prompts, capacity: capacity + 1, adapters: adapters).map { StartedSequence(state: $0, input: [decoderStartTokenId]) }
    }

    /// `encode` with the active adapter.
    public func encode(_ sources: [[Int]], capacity: Int) throws -> [EncoderDecoderCache] {
        try encode(sources, capacity: capacity, adapters: nil)
    }

    public func step(_ inputs: [StepInput], logits: LogitsSelection, adapters: [AdapterSpan]?) throws -> Logits {
        let seqs = try inputs.map { input in
            guard let cache = input.state as? EncoderDecoderCache else { throw ModelError.foreignSequenceState(model: architecture) }
            return (tokens: input.tokens, cache: cache)
        }
        return try decode(seqs, logits: logits, context: PassContext(backend: backend, rowAdapters: adapters))
    }

    /// `decode` with the active adapter on every row.
    public func decode(_ inputs: [(tokens: [Int], cache: EncoderDecoderCache)], logits: LogitsSelection) throws -> Logits {
        try decode(inputs, logits: logits, context: PassContext(backend: backend))
    }
}
