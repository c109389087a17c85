import FinchCore
import FinchFormats
import FinchQuant
import FinchTokenizer
import Foundation

/// A loaded encoder-decoder model (T5) with its tokenizer: what `finch train`, `finch generate`
/// and `finch merge` work with when the checkpoint is one.
public final class Seq2SeqLanguageModel: @unchecked Sendable {
    public let model: any Seq2SeqLM
    public let tokenizer: Tokenizer
    /// Where it was loaded from.
    public let path: String

    public init(model: any Seq2SeqLM, tokenizer: Tokenizer, path: String) {
        self.model = model; self.tokenizer = tokenizer; self.path = path
    }

    /// Whether `spec` (a path or a known short name) names a Hugging Face directory of an
    /// encoder-decoder family.
    public static func isEncoderDecoder(_ spec: String?) -> Bool {
        guard let path = try? ModelStore.resolve(spec) else { return false }
        return ModelRegistry.encoderDecoderFamily(directory: path) != nil
    }

    /// Loads a Hugging Face directory of an encoder-decoder family with its tokenizer.json;
    /// with `quantization`, its linears (but T5's `wo`) are quantized as they load.
    public static func load(_ spec: String?, dtype: WeightDType = .f32,
                            quantization: QuantizationConfig? = nil) throws -> Seq2SeqLanguageModel {
        let path = try ModelStore.resolve(spec)
        guard let family = ModelRegistry.encoderDecoderFamily(directory: path) else {
            throw ModelError.invalidConfig(path: path, reason: "not a Hugging Face directory of an encoder-decoder model (supported: \(ModelRegistry.encoderDecoderFamilies.flatMap(\.modelTypes).joined(separator: ", ")))")
        }
        let model = try family.load(path, dtype, quantization)
        return Seq2SeqLanguageModel(model: model, tokenizer: try Tokenizer(huggingFaceDirectory: path), path: path)
    }
}
