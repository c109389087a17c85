import FinchTokenizer

/// Reads a training data file into tokenized examples with label masks.
///
/// ```swift
/// let tokenizer = try Tokenizer(tokenizerJSONAt: "tokenizer.json", configAt: "tokenizer_config.json")
/// let data = try TrainingData.load(path: "alpaca.json", options: DatasetOptions(maxSeqLen: 256), tokenizer: tokenizer)
/// ```
///
/// See ``DatasetFormat`` for the formats, ``ExampleBuilder`` for tokenization and truncation
/// (qlora's), and ``FormatDetection`` for how a format is told from a file.
public enum TrainingData {
    /// The examples of the file at `path`, in file order. Records with nothing left to
    /// train on after truncation are dropped; ``loadDataset(path:options:tokenizer:)`` says how many.
    /// - Throws: ``DataError``, naming the file and line of a bad record.
    public static func load(path: String, options: DatasetOptions, tokenizer: Tokenizer) throws -> [TrainingExample] {
        try loadDataset(path: path, options: options, tokenizer: tokenizer).examples
    }

    /// The examples of the file at `path` with counts of records read, dropped and truncated.
    /// - Throws: ``DataError``; ``DataError/emptyDataset(path:dropped:)`` when no example is left.
    public static func loadDataset(path: String, options: DatasetOptions, tokenizer: Tokenizer) throws -> LoadedDataset {
        try options.validate()
        if options.addEOS && tokenizer.eosTokenId == nil && options.format != .chat {
            throw DataError.invalidOptions(reason: "the tokenizer has no EOS token to append; set addEOS to false")
        }
        let format = try options.format ?? FormatDetection.detect(path: path)
        if options.decoderStartTokenId != nil && !format.isSourceTarget {
            throw DataError.invalidOptions(reason: "\(path) is \(format.rawValue) data; an encoder-decoder model trains on (source, target) pairs: use the alpaca, input-output or self-instruct format")
        }
        let builder = ExampleBuilder(tokenizer: tokenizer, options: options)
        var result = LoadedDataset(examples: [], format: format, recordCount: 0, droppedCount: 0, truncatedCount: 0)

        if FormatDetection.layout(path: path, format: format) == .rawText {
            let (examples, dropped) = builder.chunks(of: try DataFileReader.text(path: path))
            result.examples = examples
            result.recordCount = 1
            result.droppedCount = dropped
        } else {
            if format == .chat && tokenizer.chatTemplate == nil { throw DataError.noChatTemplate(path: path) }
            let records = try DataFileReader.records(path: path)
            result.recordCount = records.count
            let reader = format.reader
            for record in records {
                try reader.add(record, path: path, builder: builder, to: &result)
            }
        }
        if result.examples.isEmpty { throw DataError.emptyDataset(path: path, dropped: result.droppedCount) }
        return result
    }

    /// The format of the file at `path`, from its extension and its first record's keys
    /// (see ``FormatDetection``).
    /// - Throws: ``DataError/unknownExtension(path:extension:)``, ``DataError/undetectableFormat(path:line:keys:)``,
    ///   or the error of a malformed first record.
    public static func detectFormat(path: String) throws -> DatasetFormat {
        try FormatDetection.detect(path: path)
    }
}
