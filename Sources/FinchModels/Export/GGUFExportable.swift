import FinchCore
import FinchFormats
import FinchTokenizer

/// A model that writes itself as a llama.cpp GGUF file (`finch export --format gguf`): decoder
/// families (`DecoderModel`) and T5 (`T5Model`). What export asks of a model is this capability,
/// never its kind; a model without it is refused by ``ExportError/noGGUFWriter(path:architecture:)``.
public protocol GGUFExportable: LanguageModel {
    /// Writes the model as a GGUF file at `path`: `general.*`, llama.cpp's architecture keys, the
    /// tokenizer metadata given (`tokenizer.*`, see `Tokenizer.ggufMetadata`) and every weight
    /// under llama.cpp's name in `type` (llama-quantize's tensor mix for the quantized types). The
    /// weights are what the model computes with: a merged adapter is in them, an active unmerged
    /// one is folded in as the file is written. The file appears atomically.
    /// - Throws: ``ExportError`` for what llama.cpp would compute differently, naming why.
    func saveGGUF(to path: String, tokenizer: [(key: String, value: GGUFValue)], type: GGUFExportType,
                  name: String?) throws -> GGUFExport
}

extension LanguageModel {
    /// This model as a GGUF writer, or ``ExportError/noGGUFWriter(path:architecture:)`` naming its
    /// architecture (`path`: the model's, for the message).
    public func ggufExportable(path: String) throws -> any GGUFExportable {
        guard let m = self as? any GGUFExportable else {
            throw ExportError.noGGUFWriter(path: path, architecture: architecture)
        }
        return m
    }
}

extension DecoderModel: GGUFExportable {}

extension GGUFExport {
    /// Encodes one model tensor's values `v` as `type` into `out`, refusing a value f16 cannot
    /// hold (`tensor`: its Hugging Face name, `path`: the file, for the message).
    static func encode(_ v: Buffer<Float>, as type: GGMLType, tensor: String, path: String,
                       into out: UnsafeMutableRawBufferPointer) throws {
        if type == .f16, let bad = (0..<v.count).first(where: { v[$0].isFinite && abs(v[$0]) > 65504 }) {
            throw ExportError.unsupported(path: path, reason: "tensor '\(tensor)' holds \(v[bad]), which f16 cannot represent; export as bf16 or f32")
        }
        GGMLQuantizer.quantize(v.pointer, count: v.count, to: type, into: out)
    }

    /// Writes a model GGUF (every architecture's): the `general.*` keys, `hyperparameters`, the
    /// tokenizer's `tokenizer.*` keys and `tensors` (`counts`: how many of each type), and says
    /// what was written.
    static func writeModel(to path: String, architecture: String, type: GGUFExportType, name: String?,
                           hyperparameters: [(key: String, value: GGUFValue)], tokenizer: [(key: String, value: GGUFValue)],
                           tensors: [GGUFWriter.Tensor], counts: [GGMLType: Int], adapters: [String]) throws -> GGUFExport {
        var metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string(architecture)),
            ("general.type", .string("model")),
            ("general.name", .string(name ?? "finch-export")),
            ("general.file_type", .uint32(type.fileType)),
            ("general.quantization_version", .uint32(2)),
        ]
        metadata += hyperparameters
        metadata += tokenizer.filter { $0.key.hasPrefix("tokenizer.") }
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors)
        return GGUFExport(path: path, architecture: architecture, tensorCount: tensors.count,
                          bytes: tensors.reduce(0) { $0 + $1.byteCount }, typeCounts: counts, adapters: adapters)
    }
}
