/// A tokenized dataset and what happened while reading it.
public struct LoadedDataset: Sendable {
    /// The examples, in file order.
    public var examples: [TrainingExample]
    /// The format the file was read as (given or detected).
    public var format: DatasetFormat
    /// Records read: JSON records, or 1 for a raw text file.
    public var recordCount: Int
    /// Records (for `text`: chunks) left out because no label was left to take a loss on
    /// after truncation: e.g. a prompt longer than `maxSeqLen`, or an empty response with
    /// `addEOS` off. qlora keeps such examples (their loss is NaN / zero); Finch drops them.
    public var droppedCount: Int
    /// Examples cut by `maxSeqLen`, `sourceMaxLen` or `targetMaxLen` (text chunking is not counted).
    public var truncatedCount: Int

    public init(examples: [TrainingExample], format: DatasetFormat, recordCount: Int, droppedCount: Int, truncatedCount: Int) {
        self.examples = examples
        self.format = format
        self.recordCount = recordCount
        self.droppedCount = droppedCount
        self.truncatedCount = truncatedCount
    }

    /// Total tokens over all examples.
    public var tokenCount: Int { examples.reduce(0) { $0 + $1.count } }
    /// Total positions that take a loss.
    public var lossTokenCount: Int { examples.reduce(0) { $0 + $1.lossTokenCount } }
}
