/// Errors raised while reading a training data file or building batches. Each names the file
/// and, where there is one, the 1-based line, and says what to change.
public enum DataError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The data file does not exist or cannot be read.
    case fileNotFound(path: String)
    /// The file's extension says nothing about its format and no format was given.
    case unknownExtension(path: String, extension: String)
    /// The keys of the first record match no format.
    case undetectableFormat(path: String, line: Int, keys: [String])
    /// A record (or the file) is not what the format expects: bad JSON, a missing key, a value
    /// of the wrong type. `line` is 1-based; for JSON arrays the reason also names the record index.
    case malformed(path: String, line: Int, reason: String)
    /// The file has no records, or every record was dropped (`dropped` of them) because no
    /// label was left to train on after truncation.
    case emptyDataset(path: String, dropped: Int)
    /// The `chat` format needs a tokenizer with a chat template.
    case noChatTemplate(path: String)
    /// The chat template failed on a record, or renders conversations in a way that assistant
    /// messages cannot be located (it is not prefix-stable).
    case chatTemplate(path: String, line: Int, reason: String)
    /// The options cannot produce examples (e.g. `maxSeqLen` below 2).
    case invalidOptions(reason: String)
    /// The batch sampler's arguments cannot produce batches.
    case invalidSampler(reason: String)

    public var description: String {
        switch self {
        case let .fileNotFound(path):
            return "\(path): data file not found or unreadable; check the path"
        case let .unknownExtension(path, ext):
            let shown = ext.isEmpty ? "no extension" : "extension .\(ext)"
            return "\(path): cannot tell the data format from \(shown); use .json, .jsonl or .txt, "
                + "or name the format (\(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .undetectableFormat(path, line, keys):
            return "\(path):\(line): cannot tell the data format from the keys [\(keys.joined(separator: ", "))]; "
                + "expected {instruction, input, output} (alpaca), {input, output} (input-output), "
                + "{prompt, completion} (self-instruct), {messages} (chat) or {text} (oasst / text), "
                + "or name the format"
        case let .malformed(path, line, reason):
            return "\(path):\(line): \(reason)"
        case let .emptyDataset(path, dropped):
            if dropped == 0 { return "\(path): the dataset has no records" }
            return "\(path): no usable examples: all \(dropped) records were dropped because nothing was left "
                + "to train on after truncation; raise maxSeqLen / sourceMaxLen or use trainOnSource"
        case let .noChatTemplate(path):
            return "\(path): the chat format needs a tokenizer with a chat template, and this one has none; "
                + "use a model with a template (tokenizer_config.json chat_template) or another format"
        case let .chatTemplate(path, line, reason):
            return "\(path):\(line): chat template: \(reason)"
        case let .invalidOptions(reason):
            return "dataset options: \(reason)"
        case let .invalidSampler(reason):
            return "batch sampler: \(reason)"
        }
    }
}
