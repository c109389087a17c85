/// Errors raised while loading, building or writing a tokenizer.
///
/// Each case says what is wrong and where, so the message can be shown to a user as is.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A JSON file is not well-formed.
    case invalidJSON(path: String, offset: Int, reason: String)
    /// A required field is absent (`field` is a dotted path such as `model.vocab`).
    case missingField(field: String, source: String)
    /// A field is present but has the wrong type or an impossible value.
    case invalidField(field: String, source: String, reason: String)
    /// The tokenizer kind is not implemented (yet), e.g. a SentencePiece-style GGUF vocabulary.
    case unsupported(model: String, reason: String)
    /// A pre-tokenizer, normalizer, decoder or post-processor of a kind this library does not implement.
    case unsupportedComponent(kind: String, type: String, source: String)
    /// A merge rule names a token that is not in the vocabulary.
    case invalidMerge(index: Int, merge: String, reason: String)
    /// A regular expression from the tokenizer could not be compiled.
    case invalidRegex(pattern: String, reason: String)
    /// A chat was asked of a tokenizer whose files carry no chat template.
    case noChatTemplate

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "tokenizer: cannot access \(path): \(reason)"
        case let .invalidJSON(path, offset, reason):
            return "tokenizer: \(path) is not valid JSON at byte \(offset): \(reason)"
        case let .missingField(field, source):
            return "tokenizer: \(source) has no `\(field)`"
        case let .invalidField(field, source, reason):
            return "tokenizer: `\(field)` in \(source) is invalid: \(reason)"
        case let .unsupported(model, reason):
            return "tokenizer: model type \"\(model)\" is not supported: \(reason)"
        case let .unsupportedComponent(kind, type, source):
            return "tokenizer: \(kind) of type \"\(type)\" (in \(source)) is not supported"
        case let .invalidMerge(index, merge, reason):
            return "tokenizer: merge #\(index) \"\(merge)\" is invalid: \(reason)"
        case let .invalidRegex(pattern, reason):
            return "tokenizer: cannot compile the regular expression \(pattern): \(reason)"
        case .noChatTemplate:
            return "this model has no chat template (its files carry none): give one with --chat-template FILE "
                + "(a Jinja template, as tokenizer_config.json holds it), or prompt it without the chat format"
        }
    }
}
