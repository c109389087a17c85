/// Errors raised while reading or writing model files (safetensors, GGUF, JSON indexes).
///
/// Every case names the file it is about, says what is wrong, and its ``description`` says
/// what the user can do about it. Library code throws these; it never exits.
public enum FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file could not be opened, mapped, read or written (`message` is the OS reason).
    case io(path: String, message: String)
    /// The file ends before a structure it declares: `expectedBytes` were needed, the file has `actualBytes`.
    case truncatedFile(path: String, expectedBytes: Int, actualBytes: Int)
    /// The first bytes are not the format's magic number (`found` holds them).
    case badMagic(path: String, expected: String, found: [UInt8])
    /// A format version this reader does not understand.
    case unsupportedVersion(path: String, version: UInt32, supported: [UInt32])
    /// The header is malformed (bad JSON, bad length, impossible count, duplicate name, ...).
    case badHeader(path: String, reason: String)
    /// A tensor's data lies (partly) outside the file or its data section: `begin..<end` vs `limit`.
    case offsetOutOfRange(path: String, tensor: String, begin: Int, end: Int, limit: Int)
    /// A tensor's byte length disagrees with its shape and element type.
    case dtypeSizeMismatch(path: String, tensor: String, expectedBytes: Int, actualBytes: Int)
    /// A safetensors dtype string this reader does not know.
    case unknownDType(path: String, tensor: String, dtype: String)
    /// A GGUF tensor type number that ggml does not define (or no longer supports).
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    /// A known GGUF tensor type that this library cannot convert to Float.
    case unsupportedTensorType(path: String, tensor: String, type: String)
    /// A tensor's shape is invalid (negative or overflowing dimensions, row not a multiple of the block size).
    case invalidShape(path: String, tensor: String, reason: String)
    /// No tensor of this name exists.
    case missingTensor(path: String, name: String)
    /// An output buffer of the wrong size was passed.
    case outputSizeMismatch(path: String, tensor: String, expected: Int, actual: Int)
    /// Arguments passed to a writer are inconsistent (duplicate names, bad shapes, ...).
    case invalidInput(path: String, reason: String)
    /// A PyTorch pickle checkpoint (`pytorch_model.bin`, `.pt`, `adapter_model.bin`): never read,
    /// since loading a pickle can run any code it carries.
    case pickleCheckpoint(path: String)

    /// The file the error is about.
    public var path: String {
        switch self {
        case .io(let p, _), .truncatedFile(let p, _, _), .badMagic(let p, _, _),
             .unsupportedVersion(let p, _, _), .badHeader(let p, _),
             .offsetOutOfRange(let p, _, _, _, _), .dtypeSizeMismatch(let p, _, _, _),
             .unknownDType(let p, _, _), .unknownTensorType(let p, _, _),
             .unsupportedTensorType(let p, _, _), .invalidShape(let p, _, _),
             .missingTensor(let p, _), .outputSizeMismatch(let p, _, _, _), .invalidInput(let p, _),
             .pickleCheckpoint(let p):
            return p
        }
    }

    /// A one-line, human-readable message: file, problem, remedy.
    public var description: String {
        switch self {
        case .io(let path, let message):
            return "\(path): \(message); check that the path exists and is readable (or writable)"
        case .truncatedFile(let path, let expected, let actual):
            return "\(path): file is truncated: \(expected) bytes needed but the file has \(actual); the download or copy is incomplete, fetch the file again"
        case .badMagic(let path, let expected, let found):
            let hex = found.map { String($0, radix: 16) }.joined(separator: " ")
            return "\(path): not a \(expected) file (first bytes: \(hex)); check the path and the file format"
        case .unsupportedVersion(let path, let version, let supported):
            let s = supported.map(String.init).joined(separator: ", ")
            return "\(path): format version \(version) is not supported (supported: \(s)); convert the file with a current llama.cpp / gguf-py"
        case .badHeader(let path, let reason):
            return "\(path): malformed header: \(reason); the file is corrupt or was written by a buggy tool"
        case .offsetOutOfRange(let path, let tensor, let begin, let end, let limit):
            return "\(path): tensor '\(tensor)' data [\(begin), \(end)) lies outside the \(limit) available bytes; the file is truncated or corrupt"
        case .dtypeSizeMismatch(let path, let tensor, let expected, let actual):
            return "\(path): tensor '\(tensor)' has \(actual) bytes but its shape and type need \(expected); the file is corrupt"
        case .unknownDType(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has unknown dtype '\(dtype)'; convert the checkpoint to F32, F16 or BF16"
        case .unknownTensorType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has unknown ggml type \(type); the file needs a newer reader or was written by an unsupported tool"
        case .unsupportedTensorType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has type \(type), which cannot be converted to Float here; requantize the model (e.g. Q8_0, Q4_K, F16)"
        case .invalidShape(let path, let tensor, let reason):
            return "\(path): tensor '\(tensor)' has an invalid shape: \(reason); the file is corrupt"
        case .missingTensor(let path, let name):
            return "\(path): no tensor named '\(name)'; check the model architecture and the checkpoint's tensor names"
        case .outputSizeMismatch(let path, let tensor, let expected, let actual):
            return "\(path): tensor '\(tensor)' has \(expected) elements but the output buffer holds \(actual); pass a buffer of the tensor's element count"
        case .invalidInput(let path, let reason):
            return "\(path): \(reason)"
        case .pickleCheckpoint(let path):
            return "\(path): a PyTorch pickle checkpoint, which Finch never loads (unpickling can run any code the file "
                + "carries); use the model's .safetensors files, or convert once where you trust the file: "
                + "save_pretrained(dir, safe_serialization=True) in transformers or PEFT"
        }
    }
}

extension FormatError {
    /// Whether a file name is a PyTorch pickle checkpoint's (`pytorch_model.bin`, shards, `.pt`,
    /// `.pth`, `.ckpt`, `.pkl`).
    public static func isPickleName(_ name: String) -> Bool {
        let n = name.lowercased()
        return [".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"].contains { n.hasSuffix($0) }
    }

    /// Whether bytes begin as a pickle (protocol 2+) or a zip archive (torch.save's format) does.
    public static func looksLikePickle(_ head: [UInt8]) -> Bool {
        (head.count >= 2 && head[0] == 0x80 && (2...5).contains(head[1])) || head.starts(with: [0x50, 0x4b, 0x03, 0x04])
    }
}
