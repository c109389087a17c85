/// Errors raised while finding, loading or running a model.
public enum ModelError: Error, CustomStringConvertible, Sendable {
    case notFound(path: String, hint: String)
    case invalidConfig(path: String, reason: String)
    /// The checkpoint's architecture (`model_type`, `architectures` or `general.architecture`) is
    /// not one the registry knows; `supported` lists those it does.
    case unsupportedArchitecture(path: String, architecture: String, supported: [String])
    /// A config option the family does not implement (`key` = `value`); `supported` says what is.
    case unsupportedOption(path: String, key: String, value: String, supported: String)
    case missingWeight(path: String, name: String)
    /// Tensors the checkpoint holds that the model does not use.
    case unusedWeights(path: String, names: [String])
    case badWeightShape(path: String, name: String, expected: [Int], actual: [Int])
    /// Token `token` (in `place`) is not an id of the model's vocabulary of `vocab`.
    case tokenOutOfVocabulary(token: Int, vocab: Int, place: String)
    /// A sequence (`what`: "source 2", "training sequence 0", …) with no tokens where some are needed.
    case emptySequence(what: String)
    /// Two sequences of one call share a state (each needs its own from `start`).
    case sharedSequenceState
    /// A training sequence that cannot be trained on: which one, and why.
    case badTrainingSequence(index: Int, reason: String)
    /// A position past those a model with learned positions has.
    case positionPastLimit(position: Int, limit: Int)
    /// A generation or sampling setting outside its range (`name`, the value, what it takes).
    case badSetting(name: String, value: String, allowed: String)
    /// A padded batch whose attention mask row does not match its tokens.
    case maskMismatch(row: Int, entries: Int, tokens: Int)
    /// An adapter or per-row adapter request that cannot be applied: why, and what to do.
    case adapterProblem(String)
    /// Prompt `index` of a call has no tokens.
    case emptyPrompt(index: Int)
    /// A sequence state made by one kind of model was stepped by another.
    case foreignSequenceState(model: String)
    /// Generating sequence `sequence` failed.
    case generationFailed(sequence: Int, reason: String)
    /// Something a kind of model cannot do (`what`), with what to do instead.
    case notForKind(what: String, kind: ModelKind, advice: String)

    public var description: String {
        switch self {
        case .notFound(let path, let hint): return "\(path): not found. \(hint)"
        case .invalidConfig(let path, let reason): return "\(path): invalid model config: \(reason)"
        case .unsupportedArchitecture(let path, let arch, let supported):
            return "\(path): architecture '\(arch)' is not supported (Finch supports: \(supported.joined(separator: ", ")))"
        case .unsupportedOption(let path, let key, let value, let supported):
            return "\(path): \(key) = \(value) is not supported by Finch (supported: \(supported))"
        case .missingWeight(let path, let name): return "\(path): weight '\(name)' is missing; is this a complete checkpoint?"
        case .unusedWeights(let path, let names):
            let shown = names.prefix(5).joined(separator: "', '") + (names.count > 5 ? "' and \(names.count - 5) more" : "'")
            return "\(path): the checkpoint holds tensors this architecture does not use ('\(shown)); "
                + "it was probably made for another architecture or with options Finch does not implement"
        case .badWeightShape(let path, let name, let expected, let actual):
            return "\(path): weight '\(name)' has shape \(actual), expected \(expected) from the config"
        case .tokenOutOfVocabulary(let t, let v, let place):
            return "token id \(t) \(place) is outside the vocabulary (0..<\(v)); were the ids made by another model's tokenizer?"
        case .emptySequence(let what): return "\(what) has no tokens; give at least one token"
        case .sharedSequenceState: return "two sequences in one batch share a cache; start each sequence with its own state"
        case .badTrainingSequence(let i, let reason): return "training sequence \(i): \(reason)"
        case .positionPastLimit(let p, let limit):
            return "position \(p) is past the \(limit) positions this model has learned; shorten the sequence (--max-seq-len) or the generation"
        case .badSetting(let name, let value, let allowed): return "\(name) must be \(allowed) (got \(value))"
        case .maskMismatch(let row, let entries, let tokens):
            return "attention mask row \(row) has \(entries) entries for \(tokens) tokens; give one 0/1 entry per token"
        case .adapterProblem(let what): return what
        case .emptyPrompt(let i):
            return "prompt \(i) has no tokens; give at least one token"
        case .foreignSequenceState(let model):
            return "a sequence state made by another model was given to this \(model) model; start sequences with the model that steps them"
        case .generationFailed(let i, let reason):
            return "generating sequence \(i) failed: \(reason)"
        case .notForKind(let what, let kind, let advice):
            return "\(what) is not available for \(kind.rawValue) models; \(advice)"
        }
    }
}
