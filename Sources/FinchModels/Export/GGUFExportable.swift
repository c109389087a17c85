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
