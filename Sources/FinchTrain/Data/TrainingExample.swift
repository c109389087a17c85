import FinchModels

/// One tokenized training example: the model's `TrainingSequence` (tokens, and labels that are
/// the tokens with -100 where no loss is taken).
///
/// `labels[i]` is the token at position `i` (the Hugging Face convention): the loss at
/// position `i - 1` predicts `labels[i]`, so the trainer shifts by one and `labels[0]` never
/// takes a loss. `tokens.count == labels.count` always.
public typealias TrainingExample = TrainingSequence

extension TrainingSequence {
    /// Number of tokens.
    public var count: Int { tokens.count }
}
