/// Errors raised while finding, loading or running a model.
public enum ModelError: Error, CustomStringConvertible, Sendable {
    case notFound(path: String, hint: String)
    case invalidConfig(path: String, reason: String)
    case unsupportedArchitecture(path: String, architecture: String)
    case missingWeight(path: String, name: String)
    case badWeightShape(path: String, name: String, expected: [Int], actual: [Int])
    case badInput(String)

    public var description: String {
        switch self {
        case .notFound(let path, let hint): return "\(path): not found. \(hint)"
        case .invalidConfig(let path, let reason): return "\(path): invalid model config: \(reason)"
        case .unsupportedArchitecture(let path, let arch):
            return "\(path): architecture '\(arch)' is not supported yet (supported: llama, mistral, qwen2-style LLaMA family)"
        case .missingWeight(let path, let name): return "\(path): weight '\(name)' is missing; is this a complete checkpoint?"
        case .badWeightShape(let path, let name, let expected, let actual):
            return "\(path): weight '\(name)' has shape \(actual), expected \(expected) from the config"
        case .badInput(let what): return "bad input: \(what)"
        }
    }
}
