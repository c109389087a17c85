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
    case badInput(String)
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
        case .badInput(let what): return "bad input: \(what)"
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
