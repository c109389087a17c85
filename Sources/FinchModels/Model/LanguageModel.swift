import FinchCore
import FinchFormats
import FinchQuant
import FinchTokenizer
import Foundation

/// A loaded model with its tokenizer: what `finch generate`, `finch chat` and training work with.
public final class LanguageModel: @unchecked Sendable {
    public let model: any CausalLM
    public let tokenizer: Tokenizer
    /// Where it was loaded from.
    public let path: String

    public init(model: any CausalLM, tokenizer: Tokenizer, path: String) {
        self.model = model; self.tokenizer = tokenizer; self.path = path
    }

    /// Uses the Jinja chat template in `file` instead of the tokenizer's own (models whose files
    /// carry none, such as the Gemma 3 270M GGUF). The template is parsed now, so a broken one
    /// fails here, naming the file.
    public func useChatTemplate(file: String) throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ModelError.notFound(path: file, hint: "--chat-template needs a readable Jinja template file.")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ModelError.invalidConfig(path: file, reason: "the chat template is not UTF-8 text")
        }
        do { _ = try ChatTemplate(text) } catch {
            throw ModelError.invalidConfig(path: file, reason: "the chat template does not parse: \(error)")
        }
        tokenizer.chatTemplate = text
    }

    /// Loads a GGUF file, a Hugging Face directory, or a known short name (nil = the default model)
    /// of any family the registry knows; with `quantization`, the blocks' linear layers are
    /// quantized to 4 bits as they load. A directory saved in 4 bits (`finch quantize`, or
    /// transformers + bitsandbytes `load_in_4bit`) loads its 4-bit layers as stored, products in
    /// `quantization?.computeDType ?? dtype`.
    public static func load(_ spec: String?, dtype: WeightDType = .f32,
                            quantization: QuantizationConfig? = nil) throws -> LanguageModel {
        let path = try ModelStore.resolve(spec)
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        if isDir.boolValue {
            let config = try ModelRegistry.config(directory: path)
            // Refuses what Finch cannot read (other methods) before the weights are touched; an
            // int8 checkpoint's llm_int8_threshold applies unless the caller asks for int8 itself.
            let configPath = (path as NSString).appendingPathComponent("config.json")
            var quantization = quantization
            if let bytes = FileManager.default.contents(atPath: configPath),
               let json = try? JSONParser.parse([UInt8](bytes)),
               let stored = try QuantizationConfig(huggingFace: json, path: configPath), stored.isInt8, quantization == nil {
                quantization = QuantizationConfig.int8(threshold: stored.int8Threshold!, computeDType: dtype)
            }
            let source = try SafeTensorsWeightSource(directory: path)
            let model = try ModelRegistry.load(from: source, config: config, dtype: dtype, quantization: quantization)
            return LanguageModel(model: model, tokenizer: try Tokenizer(huggingFaceDirectory: path), path: path)
        }
        let file = try GGUFFile(path: path)
        let config = try ModelRegistry.config(gguf: file)
        let source = GGUFWeightSource(file: file, names: config.names, spec: config.decoderSpec)
        let model = try ModelRegistry.load(from: source, config: config, dtype: dtype, quantization: quantization)
        let tok = try Tokenizer(gguf: file)
        return LanguageModel(model: model, tokenizer: tok, path: path)
    }
}

extension Tokenizer {
    /// The tokenizer of a Hugging Face model directory: tokenizer.json, with tokenizer_config.json
    /// (special tokens, chat template) when there is one.
    public convenience init(huggingFaceDirectory path: String) throws {
        let tjson = (path as NSString).appendingPathComponent("tokenizer.json")
        let tconf = (path as NSString).appendingPathComponent("tokenizer_config.json")
        guard FileManager.default.fileExists(atPath: tjson) else {
            throw ModelError.notFound(path: tjson, hint: "An HF-layout model directory needs tokenizer.json.")
        }
        try self.init(tokenizerJSONAt: tjson, configAt: FileManager.default.fileExists(atPath: tconf) ? tconf : nil)
    }
}
