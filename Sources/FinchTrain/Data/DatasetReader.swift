import FinchTokenizer

/// One dataset format, as mlx-lm's `datasets.py` has one class per format: the keys its records
/// need, how a record of it is recognized, what a record trains on, and what it asks the model when
/// read for generation. ``DatasetFormat/reader`` names each format's reader and
/// ``DatasetFormat/detectionOrder`` the order detection asks them in; a new format is a case, a
/// reader and its place in that order.
protocol DatasetReader {
    static var format: DatasetFormat { get }
    /// The keys a record must have (named when one is missing).
    static var requiredKeys: [String] { get }
    /// Whether `record` looks like this format (detection: the first reader in ``DatasetFormat/detectionOrder`` that matches).
    static func matches(_ record: DataRecord) -> Bool
    /// Tokenizes `record` for training and adds the outcome to `result`.
    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError)
    /// The prompt of `record` and the dataset's answer, for generation.
    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt
}

/// What a record asks the model when read for generation.
enum RecordPrompt {
    /// Plain text (training's masked source), tokenized by the caller, or sent through the chat template.
    case text(question: String, reference: String?)
    /// A conversation up to its last assistant message, rendered by the chat template with the
    /// generation prompt; `question` is its last user message.
    case rendered(question: String, tokens: [Int], reference: String?)
}

extension DatasetFormat {
    /// The reader of records of this format.
    var reader: any DatasetReader.Type {
        switch self {
        case .alpaca: return AlpacaReader.self
        case .inputOutput: return InputOutputReader.self
        case .oasst: return OasstReader.self
        case .selfInstruct: return SelfInstructReader.self
        case .chat: return ChatReader.self
        case .text: return TextReader.self
        }
    }

    /// The order format detection asks the readers: the first whose keys a record has wins (a chat
    /// record may also have `instruction`; `text` is last, as any record with text is text).
    static let detectionOrder: [DatasetFormat] = [.chat, .alpaca, .selfInstruct, .inputOutput, .oasst, .text]
}

/// `{instruction, input?, output}`: the Alpaca prompt is the source, `output` the target.
enum AlpacaReader: DatasetReader {
    static let format = DatasetFormat.alpaca
    static let requiredKeys = ["instruction", "output"]
    static func matches(_ record: DataRecord) -> Bool { record.value["instruction"] != nil }

    static func source(_ record: DataRecord, path: String) throws(DataError) -> String {
        AlpacaPrompt.source(instruction: try record.string("instruction", path: path, format: format),
                            input: try record.optionalString("input", path: path, format: format))
    }

    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError) {
        let source = try source(record, path: path)
        result.add(builder.sourceTarget(source: source, target: try record.string("output", path: path, format: format)))
    }

    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt {
        .text(question: try source(record, path: path), reference: try record.optionalString("output", path: path, format: format))
    }
}

/// A format that is one (source, target) pair of string fields per record.
protocol PairReader: DatasetReader {
    static var sourceKey: String { get }
    static var targetKey: String { get }
}

extension PairReader {
    static var requiredKeys: [String] { [sourceKey, targetKey] }
    static func matches(_ record: DataRecord) -> Bool { record.value[sourceKey] != nil && record.value[targetKey] != nil }

    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError) {
        let source = try record.string(sourceKey, path: path, format: format)
        result.add(builder.sourceTarget(source: source, target: try record.string(targetKey, path: path, format: format)))
    }

    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt {
        .text(question: try record.string(sourceKey, path: path, format: format),
              reference: try record.optionalString(targetKey, path: path, format: format))
    }
}

/// `{input, output}`.
enum InputOutputReader: PairReader {
    static let format = DatasetFormat.inputOutput
    static let sourceKey = "input", targetKey = "output"
}

/// `{prompt, completion}`.
enum SelfInstructReader: PairReader {
    static let format = DatasetFormat.selfInstruct
    static let sourceKey = "prompt", targetKey = "completion"
}

/// `{text: "### Human: … ### Assistant: …"}`: human turns masked, assistant replies trained.
enum OasstReader: DatasetReader {
    static let format = DatasetFormat.oasst
    static let requiredKeys = ["text"]
    static func matches(_ record: DataRecord) -> Bool {
        record.value["text"]?.stringValue.map(OasstTranscript.isTranscript) ?? false
    }

    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError) {
        let segments = OasstTranscript.segments(of: try record.string("text", path: path, format: format))
        result.add(builder.segments(segments, eosAfterLast: segments.last?.trained ?? false))
    }

    /// The transcript up to its last "### Assistant:" reply, which is the reference.
    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt {
        let segments = OasstTranscript.segments(of: try record.string("text", path: path, format: format))
        let last = segments.lastIndex(where: \.trained)
        return .text(question: segments[..<(last ?? segments.endIndex)].map(\.text).joined(), reference: last.map { segments[$0].text })
    }
}

/// `{messages: [{role, content}, …]}` (or `conversations`): everything but assistant messages masked.
enum ChatReader: DatasetReader {
    static let format = DatasetFormat.chat
    static let requiredKeys = ["messages"]
    static func matches(_ record: DataRecord) -> Bool { record.value["messages"] != nil || record.value["conversations"] != nil }

    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError) {
        let conversation = try ChatConversation(record: record, path: path)
        let segments = try conversation.segments(tokenizer: builder.tokenizer, trainOnSource: builder.options.trainOnSource,
                                                 record: record, path: path)
        result.add(builder.segments(segments, eosAfterLast: false, withBOS: false))
    }

    /// The conversation up to its last assistant message (the reference), through the chat template.
    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt {
        var messages = try ChatConversation(record: record, path: path).messages
        var reference: String?
        if let a = messages.lastIndex(where: { $0.role == "assistant" }), a > 0 {
            if case .string(let s)? = messages[a].content { reference = s }
            messages.removeSubrange(a...)
        }
        let rendered: String
        do { rendered = try tokenizer.applyChatTemplate(messages, addGenerationPrompt: true) } catch {
            throw DataError.chatTemplate(path: path, line: record.line, reason: "\(error)")
        }
        let question: String
        if case .string(let s)? = messages.last(where: { $0.role == "user" })?.content { question = s } else { question = rendered }
        return .rendered(question: question, tokens: tokenizer.encode(rendered), reference: reference)
    }
}

/// `{text}` records (or a `.txt` file, read whole): everything trained, in chunks of `maxSeqLen`.
enum TextReader: DatasetReader {
    static let format = DatasetFormat.text
    static let requiredKeys = ["text"]
    static func matches(_ record: DataRecord) -> Bool { record.value["text"] != nil }

    static func add(_ record: DataRecord, path: String, builder: ExampleBuilder, to result: inout LoadedDataset) throws(DataError) {
        let (examples, dropped) = builder.chunks(of: try record.string("text", path: path, format: format))
        result.examples += examples
        result.droppedCount += dropped
    }

    static func prompt(of record: DataRecord, path: String, tokenizer: Tokenizer) throws(DataError) -> RecordPrompt {
        .text(question: try record.string("text", path: path, format: format), reference: nil)
    }
}

extension LoadedDataset {
    /// Counts one record's outcome: its example (and whether a limit cut it), or a drop.
    mutating func add(_ outcome: ExampleBuilder.Outcome) {
        switch outcome {
        case let .example(e, truncated):
            examples.append(e)
            if truncated { truncatedCount += 1 }
        case .dropped:
            droppedCount += 1
        }
    }
}
