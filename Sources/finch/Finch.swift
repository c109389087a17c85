import ArgumentParser
import FinchCore
import FinchModels
import FinchNet
import FinchQuant
import FinchTokenizer
import Foundation

@main
struct Finch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finch",
        abstract: "LoRA and QLoRA fine-tuning of large language models, in Swift.",
        subcommands: [Train.self, Generate.self, Chat.self, Serve.self, Eval.self, Judge.self, Inspect.self, Bench.self, Merge.self, Export.self, Quantize.self, UI.self])

    /// Parses and runs the command, with the Hub's downloads shown on stderr.
    static func main() async {
        HubTerminal.install()
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand { try await command.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }
}

/// `--model`, declared once for every command that loads a model.
struct ModelSource: ParsableArguments {
    @Option(name: .customLong("model"), help: "A GGUF file, a Hugging Face model directory, a Hugging Face Hub id (ORG/NAME[@REVISION]: from the Hugging Face cache, else downloaded into it), or a known name (default: smollm2-135m).")
    var modelOption: String?

    @Option(name: .customLong("gguf-file"), help: "For a Hub id whose repository holds several GGUF files: the one to load, by name or quant type (e.g. Q4_K_M).")
    var ggufFile: String?

    /// What to load: --model, with --gguf-file as the Hub id's `:FILE`.
    var model: String? {
        guard let ggufFile, let modelOption else { return modelOption }
        return modelOption + ":" + ggufFile
    }

    func validate() throws {
        if ggufFile != nil && modelOption.flatMap(HubRepoID.init) == nil {
            throw ValidationError("--gguf-file chooses a file of a Hub repository: give --model ORG/NAME")
        }
    }

    @Option(name: .long, help: "Compute backend: cpu (Finch's kernels) or reference (plain Swift, float64 sums: slow, for checking); default FINCH_BACKEND, else cpu.")
    var backend: BackendKind?
}

/// Options shared by every command that loads a model: what to load and how.
struct BaseModelOptions: ParsableArguments {
    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }

    @Option(name: .long, help: "Storage type of the weights: f32 or bf16 (bf16 halves memory). Without it a quantized GGUF's linear weights, embedding and head stay in their blocks (products in f32); with it they are dequantized to this type.")
    var dtype: WeightDType?

    @Option(name: .customLong("quant-compute"), help: "The base linears' products: exact (their own precision) or int8 (int8 weights, activations quantized per row for prompts and batches; decoding multiplies a GGUF's own blocks, else the int8 weights, with activations quantized in groups of 32 as llama.cpp does).")
    var quantCompute: QuantCompute = .exact

    @Option(name: .long, help: "Quantized inference: quantize the block linears on load to nf4 or fp4 (4-bit) or int8 (LLM.int8); products in --dtype.")
    var quantize: QuantMethod?

    @Option(name: .customLong("int8-threshold"), help: "With --quantize int8: the outlier threshold (llm_int8_threshold, default 6; 0 = no outliers).")
    var int8Threshold: Float = 6

    @Flag(name: .customLong("double-quant"), help: "With --quantize: double-quantize the 4-bit scales.")
    var doubleQuant = false

    @Option(name: .customLong("chat-template"),
            help: "A Jinja chat template file to use instead of the model's own (for models whose files carry none).")
    var chatTemplate: String?

    /// The quantization the flags ask for (products in --dtype), if any.
    var quantization: QuantizationConfig? {
        quantize.map { QuantizationConfig(method: $0, doubleQuant: doubleQuant, computeDType: dtype ?? .f32, int8Threshold: int8Threshold) }
    }

    func load() throws -> LoadedModel {
        let dt = dtype ?? .f32
        let start = Date()
        let lm = try LoadedModel.load(model, dtype: dt, ggufBlocks: dtype == nil, quantization: quantization, quantCompute: quantCompute,
                                      backend: modelSource.backend)
        if let chatTemplate { try lm.useChatTemplate(file: chatTemplate) }
        stderrPrint(String(format: "loaded %@ (%@, %@, %@, %.0f MiB of weights) in %.2f s", lm.path, lm.family.name, lm.model.kind.rawValue,
                           lm.model.weightSummary, Double(lm.model.weightBytes) / 1_048_576, Date().timeIntervalSince(start)))
        return lm
    }
}

/// The model options with one adapter (generate, chat).
struct ModelOptions: ParsableArguments {
    @OptionGroup var base: BaseModelOptions

    @Option(name: .long, help: "LoRA adapter directory (PEFT format).")
    var adapter: String?

    func load() throws -> LoadedModel {
        let lm = try base.load()
        if let adapter {
            try lm.loadAdapter(directory: adapter)
            stderrPrint("adapter \(adapter): \(lm.model.adapterNames.joined(separator: ", ")) active")
        }
        return lm
    }
}

/// Sampling flags shared by generate and chat.
struct SamplingFlags: ParsableArguments {
    @Option(name: .long, help: "Maximum number of new tokens.")
    var maxNewTokens: Int = 256
    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0
    @Option(name: .long, help: "Keep only the k most likely tokens (0 = off).")
    var topK: Int = 0
    @Option(name: .long, help: "Nucleus sampling: keep tokens up to this cumulative probability (1 = off).")
    var topP: Float = 1
    @Option(name: .long, help: "Drop tokens less likely than this fraction of the most likely one (0 = off).")
    var minP: Float = 0
    @Option(name: .long, help: "Penalty > 1 for tokens already seen (1 = off).")
    var repetitionPenalty: Float = 1
    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 0
    @Option(name: .long, help: "Stop when the output contains this string (repeatable).")
    var stop: [String] = []

    var options: GenerationOptions {
        GenerationOptions(maxNewTokens: maxNewTokens,
                          sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                                    repetitionPenalty: repetitionPenalty),
                          seed: seed, stopStrings: stop)
    }
}

func stderrPrint(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}

/// Writes to stdout without buffering delays (for streaming).
func stdoutWrite(_ s: String) {
    FileHandle.standardOutput.write(s.data(using: .utf8)!)
}
