/// Errors of quantizing or reading quantized tensors.
public enum QuantError: Error, CustomStringConvertible, Equatable {
    case invalidBlocksize(Int)
    case unknownType(String)
    /// A stored quantized tensor that does not fit together; `what` says which part and how.
    case malformed(tensor: String, what: String)

    public var description: String {
        switch self {
        case .invalidBlocksize(let b):
            return "invalid 4-bit block size \(b): use 32, 64, 128, 256, 512, 1024, 2048 or 4096 (bitsandbytes' sizes; 64 is the default)"
        case .unknownType(let t):
            return "unknown 4-bit type '\(t)': use nf4 or fp4"
        case .malformed(let tensor, let what):
            return "quantized tensor \(tensor): \(what)"
        }
    }
}
