import Foundation

/// Tells a data file's format from its extension and, for JSON, the keys of its first record.
///
/// - `.txt` → ``DatasetFormat/text``.
/// - `.json` / `.jsonl`, by the first record's keys, first match wins:
///   `messages` or `conversations` → `chat`; `instruction` → `alpaca`;
///   `prompt` and `completion` → `self-instruct`; `input` and `output` → `input-output`;
///   `text` → `oasst` when it holds a `### Human:` or `### Assistant:` marker, else `text`.
/// - anything else → ``DataError/unknownExtension(path:extension:)``.
enum FormatDetection {
    /// How the file's bytes are read.
    enum Layout {
        /// The whole file is one document.
        case rawText
        /// JSON lines or one JSON array of records.
        case records
    }

    /// The lower-cased extension of `path`.
    static func fileExtension(_ path: String) -> String {
        URL(fileURLWithPath: path).pathExtension.lowercased()
    }

    /// How to read `path` for `format`: `.txt` and unknown extensions are raw text for the
    /// `text` format; JSON extensions are always records.
    static func layout(path: String, format: DatasetFormat) -> Layout {
        let ext = fileExtension(path)
        if ext == "json" || ext == "jsonl" { return .records }
        return format == .text ? .rawText : .records
    }

    /// The format of the file at `path`.
    static func detect(path: String) throws(DataError) -> DatasetFormat {
        let ext = fileExtension(path)
        try DataFileReader.requireFile(path)
        if ext == "txt" { return .text }
        guard ext == "json" || ext == "jsonl" else { throw .unknownExtension(path: path, extension: ext) }
        guard let first = try DataFileReader.records(path: path, limit: 1).first else {
            throw .emptyDataset(path: path, dropped: 0)
        }
        return try detect(first, path: path)
    }

    /// The format whose keys `record` has: the first reader of ``DatasetFormat/detectionOrder`` that matches.
    static func detect(_ record: DataRecord, path: String) throws(DataError) -> DatasetFormat {
        guard let format = DatasetFormat.detectionOrder.first(where: { $0.reader.matches(record) }) else {
            throw .undetectableFormat(path: path, line: record.line, keys: record.keys)
        }
        return format
    }
}
