/// How a dataset file is read and tokenized (qlora's data arguments).
public struct DatasetOptions: Sendable {
    /// The file's format; nil detects it (see ``TrainingData/detectFormat(path:)``).
    public var format: DatasetFormat?
    /// Longest example in tokens; longer ones are cut, keeping the start. For `text` data,
    /// the length of the chunks the token stream is cut into.
    public var maxSeqLen: Int
    /// Longest source (prompt) in tokens, BOS included, keeping the start; nil: no limit but
    /// `maxSeqLen`. Applies to the source/target formats (``DatasetFormat/isSourceTarget``).
    public var sourceMaxLen: Int?
    /// Longest target (response) in tokens, EOS included, keeping the start; nil: no limit
    /// but `maxSeqLen`. Applies to the source/target formats.
    public var targetMaxLen: Int?
    /// Take the loss on the source (prompt, human turns) too, not only on the target.
    public var trainOnSource: Bool
    /// Append the tokenizer's EOS token to each target (to the last assistant reply for
    /// `oasst`, to each record or file for `text`). Chat templates write their own
    /// end-of-turn tokens, so `chat` ignores it.
    public var addEOS: Bool
    /// For an encoder-decoder model (T5): the id its decoder starts from. Each example is then a
    /// pair: the source (with EOS) for the encoder, the target (with EOS) for the decoder, each
    /// cut to its own limit and to `maxSeqLen`; only the source/target formats apply.
    public var decoderStartTokenId: Int32?

    /// Options with qlora-like defaults: detect the format, 512 tokens, loss on the target only, EOS appended.
    public init(format: DatasetFormat? = nil, maxSeqLen: Int = 512, sourceMaxLen: Int? = nil,
                targetMaxLen: Int? = nil, trainOnSource: Bool = false, addEOS: Bool = true) {
        self.format = format
        self.maxSeqLen = maxSeqLen
        self.sourceMaxLen = sourceMaxLen
        self.targetMaxLen = targetMaxLen
        self.trainOnSource = trainOnSource
        self.addEOS = addEOS
        self.decoderStartTokenId = nil
    }

    /// Throws ``DataError/invalidOptions(reason:)`` for lengths that cannot make an example.
    func validate() throws(DataError) {
        if maxSeqLen < 2 {
            throw .invalidOptions(reason: "maxSeqLen is \(maxSeqLen); it must be at least 2 (one token to read, one to predict)")
        }
        if let s = sourceMaxLen, s < 0 {
            throw .invalidOptions(reason: "sourceMaxLen is \(s); it must be 0 or more")
        }
        if let t = targetMaxLen, t < 1 {
            throw .invalidOptions(reason: "targetMaxLen is \(t); it must be at least 1")
        }
        if decoderStartTokenId != nil && trainOnSource {
            throw .invalidOptions(reason: "train_on_source has no meaning for an encoder-decoder model: the source is the encoder's input, the loss is on the target")
        }
    }
}
