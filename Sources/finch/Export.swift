import ArgumentParser
import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
import FinchTokenizer
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model (with a LoRA adapter merged in), or the adapter alone, as GGUF for llama.cpp, Ollama or LM Studio.",
        discussion: """
            --format gguf: loads the base model in f32 (4-bit layers dequantized), merges the adapter if one is given, and \
            writes one GGUF file with llama.cpp's architecture metadata, tokenizer and chat template: decoder-only \
            models (llama, mistral, qwen2, qwen3, gemma3, gpt2) and T5 (llama.cpp's t5 architecture, its Unigram \
            vocabulary as llama.cpp's t5 tokenizer; relu or gated-gelu FFN and relative_attention_max_distance 128, \
            as llama.cpp computes T5; f32, f16, bf16, q8_0 or q4_0). --type \
            f32 / f16 / bf16 store the weights in that type (norms and biases in f32, as llama.cpp's \
            converter does); q8_0, q4_0 and q4_k_m store them as llama-quantize would from the same f32 \
            weights (its tensor mix and reference quantizers, byte for byte). The file appears atomically. \
            As a self-check the written file is loaded back and its logits on a short prompt compared with \
            the adapter model's (T5: the decoder's logits on the prompt encoded, teacher-forced with the prompt).
            """)

    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }

    @Option(name: .long, help: "LoRA adapter directory (PEFT format) to merge; without it the base model is exported as it is.")
    var adapter: String?

    @Option(name: .long, help: "Output format: gguf (the merged model) or gguf-lora (the adapter alone).")
    var format: String = "gguf"

    @Option(name: .long, help: "Weight type: f32, f16, bf16, q8_0, q4_0 or q4_k_m (gguf, default f16); f32, f16 or bf16 (gguf-lora, default f32).")
    var type: String?

    @Option(name: [.customLong("output"), .customLong("out")], help: "The GGUF file to write.")
    var output: String

    @Option(name: .long, help: "general.name in the file (default: the output file's name).")
    var name: String?

    @Option(name: .customLong("gguf-pre"), help: "llama.cpp's pre-tokenizer name (tokenizer.ggml.pre) when Finch does not recognise the tokenizer's own.")
    var ggufPre: String?

    @Option(name: .long, help: "Where to write the Ollama Modelfile (default: the output with .Modelfile for .gguf).")
    var modelfile: String?

    @Flag(name: .customLong("no-modelfile"), help: "Write no Ollama Modelfile.")
    var noModelfile = false

    @Option(name: .customLong("ollama-base"), help: "gguf-lora: the base GGUF the Modelfile's FROM names (default: --model when it is a GGUF file).")
    var ollamaBase: String?

    @Option(name: .long, help: "Prompt of the self-check.")
    var checkPrompt = "The quick brown fox jumps over the lazy dog because"

    @Option(name: .long, help: "Also save the check's token ids and logits (the model before export, the file read back) to this safetensors file.")
    var saveCheck: String?

    func run() throws {
        guard format == "gguf" || format == "gguf-lora" else {
            throw ValidationError("--format must be gguf (the merged model) or gguf-lora (the adapter alone); got '\(format)'")
        }
        let typeName = type ?? (format == "gguf" ? "f16" : "f32")
        guard let exportType = GGUFExportType(rawValue: typeName.lowercased()) else {
            throw ValidationError("--type must be one of \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(typeName)')")
        }
        if format == "gguf-lora" { return try exportLoRA(type: exportType) }
        var start = Date()
        let lm = try LoadedModel.load(model, dtype: .f32, backend: modelSource.backend)
        let exportable = try lm.model.ggufExportable(path: lm.path)
        if exportable.isQuantized { try exportable.dequantizeLinears() }
        if let adapter {
            try lm.loadAdapter(directory: adapter)
            stderrPrint(String(format: "loaded %@ + adapter %@ in %.2f s", lm.path, adapter, Date().timeIntervalSince(start)))
        } else {
            stderrPrint(String(format: "loaded %@ in %.2f s", lm.path, Date().timeIntervalSince(start)))
        }
        let check = try lm.prompts.selfCheck(checkPrompt, chat: false)
        let (tokens, reference) = try exportable.teacherForcedLogits(prompt: check.prompt, then: check.then)
        if adapter != nil { try exportable.mergeActiveAdapter() }

        // The tokenizer as the source GGUF describes it, else as written from tokenizer.json.
        let tokenizerMetadata: [(key: String, value: GGUFValue)]
        if lm.path.hasSuffix(".gguf") {
            let source = try GGUFFile(path: lm.path)
            tokenizerMetadata = try lm.tokenizer.extendingGGUFMetadata(
                source.metadataKeys.filter { $0.hasPrefix("tokenizer.") }.map { ($0, source.metadata[$0]!) })
        } else {
            tokenizerMetadata = try lm.tokenizer.ggufMetadata(pre: ggufPre, vocabSize: exportable.vocabSize)
        }
        start = Date()
        let fileName = ((output as NSString).lastPathComponent as NSString).deletingPathExtension
        let result = try exportable.saveGGUF(to: output, tokenizer: tokenizerMetadata, type: exportType, name: name ?? fileName)
        let seconds = Date().timeIntervalSince(start)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output) (\(result.architecture), \(exportType.rawValue), \(result.tensorCount) tensors, "
              + String(format: "%.1f MiB, %.2f s)", Double(size) / 1_048_576, seconds))
        print("  tensor types: " + result.typeCounts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.name) \($0.value)" }.joined(separator: ", "))
        if !result.adapters.isEmpty { print("  merged adapter(s): \(result.adapters.joined(separator: ", "))") }
        try writeModelfile(from: "./" + (output as NSString).lastPathComponent, adapter: nil, tokenizer: lm.tokenizer,
                           source: ModelStore.displayName(of: model, path: lm.path))

        // The weights read back (the tokenizer is the source's: Finch does not read every GGUF vocabulary).
        let reloaded = try ModelRegistry.model(gguf: GGUFFile(path: output), dtype: .f32).model
        let again = try reloaded.teacherForcedLogits(prompt: check.prompt, then: check.then).logits
        let diff = maxAbsDiff(reference.joined(), again.joined())
        print(String(format: "self-check on %d prompt tokens, max |logit diff| of the file read back vs the %@ model: %.3g%@",
                     tokens.count, adapter == nil ? "base" : "adapter", diff,
                     exportType == .f32 ? "" : " (weights rounded to \(exportType.rawValue))"))
        if let saveCheck {
            try Merge.saveCheck(to: saveCheck, tokens: tokens, logits: [("logits.model", reference), ("logits.exported", again)],
                                metadata: ["prompt": checkPrompt, "type": exportType.rawValue])
        }
    }

    /// --format gguf-lora: only the base's config is read (its weights are not needed).
    func exportLoRA(type: GGUFExportType) throws {
        guard let adapter else { throw ValidationError("--format gguf-lora exports an adapter: pass --adapter DIR") }
        let path = try ModelStore.resolve(model)
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let config = isDir.boolValue ? try ModelRegistry.config(directory: path) : try ModelRegistry.config(gguf: GGUFFile(path: path))
        let settings = try AdapterConfig.load(path: (adapter as NSString).appendingPathComponent("adapter_config.json"))
        if !settings.modulesToSave.isEmpty || settings.trainableTokenIndices != nil {
            let what = settings.modulesToSave.isEmpty ? "rows of the embedding (trainable_token_indices)"
                : "\(settings.modulesToSave.joined(separator: ", ")) in full (modules_to_save)"
            throw ValidationError("\(adapter): the adapter also trains \(what), which a llama.cpp LoRA GGUF cannot hold: export the merged model instead (finch export --adapter \(adapter), without --format gguf-lora)")
        }
        if LoRAAdapter.isDecompositionInit(settings.initLoRAWeights) || settings.initLoRAWeights.lowercased() == "loftq" {
            throw ValidationError("\(adapter): the adapter was saved from an init_lora_weights \(settings.initLoRAWeights) start without converting it, so it is relative to a rewritten base a llama.cpp LoRA cannot carry: export the merged model instead (finch export --adapter \(adapter)), or convert it first")
        }
        let weights = try SafeTensorsFile(path: (adapter as NSString).appendingPathComponent("adapter_model.safetensors"))
        if let other = weights.tensorNames.first(where: { !$0.contains(".lora_") }) {
            throw ValidationError("\(adapter): the adapter also saves \(other) (the embedding or head of a vocabulary grown by added tokens), which a llama.cpp LoRA GGUF cannot hold: export the merged model instead (finch export --adapter \(adapter), without --format gguf-lora)")
        }
        let lora = try LoRAAdapter.load(directory: adapter, linears: config.linearModules)
        let tokenizer = try isDir.boolValue ? Tokenizer(huggingFaceDirectory: path) : Tokenizer(gguf: GGUFFile(path: path))
        let fileName = ((output as NSString).lastPathComponent as NSString).deletingPathExtension
        let result = try config.saveGGUFLoRA(lora, to: output, type: type, name: name ?? fileName)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output) (LoRA adapter for \(result.architecture), \(result.modules) layers, r = \(result.rank), "
              + String(format: "alpha = %g, %@, %.1f MiB)", result.alpha, type.rawValue, Double(size) / 1_048_576))
        if !result.rescaled.isEmpty {
            print("  \(result.rescaled.count) layer(s) with their own rank or alpha: B rescaled so that alpha / r gives their trained scale")
        }
        print("  apply it to a GGUF of \(ModelStore.displayName(of: model, path: path)): llama-cli -m BASE.gguf --lora \(output)")
        if let base = ollamaBase ?? (isDir.boolValue ? nil : path) {
            let from = URL(fileURLWithPath: base).standardizedFileURL.path
            try writeModelfile(from: from, adapter: "./" + (output as NSString).lastPathComponent, tokenizer: tokenizer,
                               source: ModelStore.displayName(of: model, path: path))
        } else if !noModelfile {
            print("  no Modelfile: Ollama needs the base as GGUF; export it (finch export --type f16) and pass --ollama-base FILE.gguf")
        }
    }

    /// The Ollama Modelfile beside the output (see `OllamaModelfile`).
    func writeModelfile(from: String, adapter: String?, tokenizer: Tokenizer, source: String) throws {
        if noModelfile { return }
        let path = modelfile ?? (output.hasSuffix(".gguf") ? String(output.dropLast(5)) : output) + ".Modelfile"
        let name = ((output as NSString).lastPathComponent as NSString).deletingPathExtension.lowercased()
        let file = OllamaModelfile(from: from, adapter: adapter, tokenizer: tokenizer, comments: [
            "Ollama Modelfile written by finch export (\(source)\(self.adapter.map { " + adapter " + $0 } ?? "")).",
            "Import: ollama create \(name) -f \((path as NSString).lastPathComponent)   (run it where this file is)",
        ])
        try AtomicFile.write(file.text, to: path)
        print("wrote \(path) (Ollama: \(file.format == nil ? "no TEMPLATE, Ollama reads the GGUF's chat template" : "TEMPLATE from the chat template")"
              + (file.stops.isEmpty ? "" : ", stop \(file.stops.joined(separator: " "))") + ")")
    }
}
