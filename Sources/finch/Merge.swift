import ArgumentParser
import FinchCore
import FinchFormats
import FinchModels
import FinchTokenizer
import Foundation

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a LoRA adapter into its base model and save a Hugging Face model directory.",
        discussion: """
            Loads the base model in f32, applies the adapter, merges it (W + scaling·B·A) and writes \
            config.json, generation_config.json, model.safetensors (sharded past --max-shard-size), \
            tokenizer.json and tokenizer_config.json, all at once (a temporary sibling directory is \
            renamed into place). As a self-check it prints the largest |logit difference| on a short \
            prompt between the adapter model and the merged model, and the exported directory reloaded.
            """)

    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }

    @Option(name: .long, help: "LoRA adapter directory (PEFT format).")
    var adapter: String

    @Option(name: [.customLong("output"), .customLong("out")], help: "Directory to write the merged model to.")
    var output: String

    @Option(name: .long, help: "Element type of the saved weights: f32, bf16 or f16.")
    var dtype: ExportDType = .f32

    @Flag(name: .long, help: "Replace the output directory if it exists and is not empty.")
    var overwrite = false

    @Option(name: .long, help: "Split the weights into shards of at most this size (e.g. 2GB, 500MB; default: one file).")
    var maxShardSize: String?

    @Option(name: .long, help: "Prompt of the self-check.")
    var checkPrompt = "The quick brown fox jumps over the lazy dog because"

    @Flag(name: .long, help: "Wrap the check prompt in the model's chat template as a user message.")
    var checkChat = false

    @Flag(name: .customLong("keep-4bit"), help: "With a 4-bit base: merge into the 4-bit weights (requantized, rounding reported) and save them in bitsandbytes' layout, instead of dequantizing to --dtype first.")
    var keep4bit = false

    @Option(name: .long, help: "Also save the check's token ids and logits (adapter, merged, exported) to this safetensors file.")
    var saveCheck: String?

    func run() throws {
        let exportType = dtype
        let shardBytes = try maxShardSize.map(Self.parseSize)
        var start = Date()
        let lm = try LoadedModel.load(model, dtype: .f32, backend: modelSource.backend)
        let quantizedBase = lm.model.isQuantized
        // PEFT's advice for QLoRA: merge into the dequantized base, not back into 4 bits.
        if quantizedBase && !keep4bit { try lm.model.dequantizeLinears() }
        try lm.loadAdapter(directory: adapter)
        stderrPrint(String(format: "loaded %@ + adapter %@ in %.2f s", lm.path, adapter, Date().timeIntervalSince(start)))

        let check = try lm.prompts.selfCheck(checkPrompt, chat: checkChat)
        let (tokens, withAdapter) = try lm.model.teacherForcedLogits(prompt: check.prompt, then: check.then)
        try lm.model.mergeActiveAdapter()
        let merged = try lm.model.teacherForcedLogits(prompt: check.prompt, then: check.then).logits

        start = Date()
        let result = try lm.model.saveHuggingFace(to: output, tokenizer: lm.tokenizer, dtype: exportType,
                                                  maxShardBytes: shardBytes, overwrite: overwrite)
        let saveTime = Date().timeIntervalSince(start)

        // Reload what was written, as a user would.
        let reloaded = try LoadedModel.load(output, dtype: .f32, backend: modelSource.backend)
        let reloadedCheck = try reloaded.prompts.selfCheck(checkPrompt, chat: checkChat)
        let exported = try reloaded.model.teacherForcedLogits(prompt: check.prompt, then: check.then).logits

        print("wrote \(result.directory) (\(exportType.rawValue), \(result.tensorCount) tensors, "
              + String(format: "%.1f MiB of weights, %.2f s)", Double(result.tensorBytes) / 1_048_576, saveTime))
        Self.printFiles(of: result)
        print("merged adapter(s): \(result.adapters.joined(separator: ", "))")
        if quantizedBase {
            print(keep4bit
                  ? String(format: "merged into the 4-bit base and requantized: max |W_4bit - (W + dW)| = %.3g", lm.model.lastMergeRoundingError)
                  : "the 4-bit base was dequantized to f32 before merging (pass --keep-4bit to requantize instead)")
        }
        print("self-check on \(tokens.count) prompt tokens, max |logit diff| vs the adapter model:")
        print(String(format: "  merged in memory:   %.3g", maxAbsDiff(withAdapter.joined(), merged.joined())))
        print(String(format: "  exported, reloaded: %.3g%@", maxAbsDiff(withAdapter.joined(), exported.joined()),
                     exportType == .f32 ? "" : " (weights rounded to \(exportType.rawValue))"))
        if reloadedCheck.prompt != check.prompt || reloadedCheck.then != check.then {
            print("  WARNING: the exported tokenizer encodes the prompt differently (\(reloadedCheck.prompt.count) vs \(check.prompt.count) tokens)")
        }
        if let saveCheck {
            let v = lm.model.vocabSize
            let ids = tokens.map(Int64.init)
            try SafeTensorsWriter.write([
                .init(name: "input_ids", dtype: .i64, shape: [ids.count], bytes: ids.withUnsafeBytes { [UInt8]($0) }),
                .float32(name: "logits.adapter", shape: [tokens.count, v], values: withAdapter.flatMap { $0 }),
                .float32(name: "logits.merged", shape: [tokens.count, v], values: merged.flatMap { $0 }),
                .float32(name: "logits.exported", shape: [tokens.count, v], values: exported.flatMap { $0 }),
            ], metadata: ["prompt": checkPrompt, "chat": String(checkChat)], to: saveCheck)
            print("saved the check's ids and logits to \(saveCheck)")
        }
    }

    /// Saves a self-check's token ids and its logits ([tokens, vocab] each, under `name`) to a
    /// safetensors file (`--save-check` of export and quantize), and says so.
    static func saveCheck(to path: String, tokens: [Int], logits: [(name: String, values: [[Float]])],
                          metadata: [String: String]) throws {
        let ids = tokens.map(Int64.init)
        var entries: [SafeTensorsWriter.Entry] = [
            .init(name: "input_ids", dtype: .i64, shape: [ids.count], bytes: ids.withUnsafeBytes { [UInt8]($0) })]
        for (name, values) in logits {
            entries.append(.float32(name: name, shape: [tokens.count, values.first?.count ?? 0], values: values.flatMap { $0 }))
        }
        try SafeTensorsWriter.write(entries, metadata: metadata, to: path)
        print("saved the check's ids and logits to \(path)")
    }

    /// "2GB", "500MB", "100KB", "123" (bytes); decimal units as transformers' max_shard_size, GiB/MiB binary.
    static func parseSize(_ s: String) throws -> Int {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024),
                                         ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        for (u, f) in units where t.hasSuffix(u) {
            if let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v > 0 { return Int(v * f) }
            break
        }
        if let v = Int(t), v > 0 { return v }
        throw ValidationError("--max-shard-size must be a positive size such as 2GB or 500MB (got '\(s)')")
    }

    /// One line per file of an export: its name and size on disk.
    static func printFiles(of result: HuggingFaceExport) {
        for f in result.files {
            let path = (result.directory as NSString).appendingPathComponent(f)
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            print("  \(f)  \(formatSize(size))")
        }
    }

    static func formatSize(_ n: Int) -> String {
        n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / 1_048_576) : String(format: "%.1f KiB", Double(n) / 1024)
    }
}
