/// Errors from the compute core: what failed and what to do about it.
public enum CoreError: Error, CustomStringConvertible, Sendable {
    /// A oneDNN call failed; `status` is its dnnl_status_t.
    case dnnl(call: String, status: Int32)
    /// Shapes that cannot be combined.
    case shapeMismatch(String)
    /// An operation that this dtype does not support.
    case unsupportedDType(String)
    /// A loss target that is neither a token id (0 ..< vocab) nor the ignore index -100.
    case invalidTarget(row: Int, target: Int, vocab: Int)
    /// A compute backend name (from `source`: FINCH_BACKEND, --backend) that names no backend.
    case unknownBackend(name: String, source: String)

    public var description: String {
        switch self {
        case .dnnl(let call, let status):
            return "oneDNN \(call) failed with status \(status); check that libdnnl2 is installed and the CPU supports the requested data type"
        case .shapeMismatch(let what): return "shape mismatch: \(what)"
        case .unsupportedDType(let what): return "unsupported data type: \(what)"
        case .invalidTarget(let row, let target, let vocab):
            return "label \(target) at row \(row) is not a token id below the vocabulary size \(vocab) or -100 (ignored); check the tokenizer matches the model"
        case .unknownBackend(let name, let source):
            let names = BackendKind.allCases.map(\.rawValue).joined(separator: ", ")
            return "\(source) names the compute backend '\(name)', which Finch does not have; use one of: \(names)"
        }
    }
}
