import FinchFormats
import FinchTokenizer

/// One item of a dataset read for generation (`finch generate --data`, the judge): what the
/// model continues, and the dataset's own answer when it has one.
public struct PromptItem: Sendable, Equatable {
    /// The record's `id`, `question_id` or `message_id` when it has one, else its 0-based index.
    public var id: JSONValue
    /// The prompt as text (what a person reads: the question, without template or BOS).
    public var question: String
    /// The tokens the model continues.
    public var tokens: [Int]
    /// The dataset's answer (the training target), if the record has one.
    public var reference: String?

    public init(id: JSONValue, question: String, tokens: [Int], reference: String?) {
        self.id = id; self.question = question; self.tokens = tokens; self.reference = reference
    }
}

extension TrainingData {
    /// The items of a dataset in any format `finch train` reads, for generation: the prompt is
    /// what training masks — the Alpaca prompt, `input`, `prompt`; an OpenAssistant transcript up
    /// to its last "### Assistant:"; a conversation up to its last assistant message, rendered
    /// by the chat template with the generation prompt — tokenized as training tokenizes it (BOS
    /// where the tokenizer adds one), and the answer is what training learns. A `text` record
    /// is all prompt. With `chat`, prompts that are plain text (every format but `chat`) are
    /// sent as a user message through the model's chat template instead.
    /// - Throws: ``DataError`` naming the file and line of a bad record; a raw text file (not
    ///   records) is refused: use one JSON line per prompt.
    public static func promptItems(path: String, format: DatasetFormat? = nil, tokenizer: Tokenizer,
                                   chat: Bool = false, system: String? = nil) throws -> [PromptItem] {
        let format = try format ?? FormatDetection.detect(path: path)
        if FormatDetection.layout(path: path, format: format) == .rawText {
            throw DataError.invalidOptions(reason: "\(path): a plain-text file has no items to answer; give a JSON lines "
                + "file (e.g. {\"text\": \"…\"} per line) or use --prompts-file for one prompt per line")
        }
        if (format == .chat || chat) && tokenizer.chatTemplate == nil { throw DataError.noChatTemplate(path: path) }
        var items: [PromptItem] = []
        let reader = format.reader
        for (index, record) in try DataFileReader.records(path: path).enumerated() {
            let id = ["id", "question_id", "message_id"].lazy.compactMap { k in record.value[k].flatMap { $0.isNull ? nil : $0 } }
                .first ?? .number(String(index))
            let question: String, reference: String?
            switch try reader.prompt(of: record, path: path, tokenizer: tokenizer) {
            case let .rendered(q, tokens, r):
                items.append(PromptItem(id: id, question: q, tokens: tokens, reference: r))
                continue
            case let .text(q, r):
                question = q; reference = r
            }
            let tokens: [Int]
            if chat {
                do { tokens = tokenizer.encode(try tokenizer.applyChatTemplate(user: question, system: system)) } catch {
                    throw DataError.chatTemplate(path: path, line: record.line, reason: "\(error)")
                }
            } else {
                // With the tokenizer's special tokens, as a prompt: a BOS where it adds one, T5's closing </s>.
                tokens = tokenizer.encode(question, addSpecialTokens: true)
            }
            items.append(PromptItem(id: id, question: question, tokens: tokens, reference: reference))
        }
        if items.isEmpty { throw DataError.emptyDataset(path: path, dropped: 0) }
        return items
    }
}
