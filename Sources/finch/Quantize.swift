import ArgumentParser
import FinchCore
import FinchModels
import FinchQuant
import Foundation

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model's block linears to 4 bits or LLM.int8 once and save it in bitsandbytes' layout.",
        discussion: """
            Writes a Hugging Face model directory as transformers + bitsandbytes save a load_in_4bit \
            model (each q/k/v/o/gate/up/down weight as packed nibbles with its absmax, quant_map, \
            nested (double-quantized) scales and quant_state) or, with --quantize int8, a load_in_8bit \
            model (int8 rows, SCB, weight_format); embeddings, norms and the LM head in \
            --dtype; config.json with a quantization_config; the tokenizer. `finch train`, `generate` \
            and `chat` load such a directory without quantizing again (so does transformers). As a \
            self-check it prints the largest |logit difference| between the quantized model in \
            memory and the directory reloaded (0: the bytes round-trip).
            """)

    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }

    @Option(name: .long, help: "nf4 or fp4 (4-bit), or int8 (LLM.int8, bitsandbytes' Linear8bitLt layout).")
    var quantize: QuantMethod = .nf4

    @Option(name: .customLong("int8-threshold"), help: "With --quantize int8: the outlier threshold recorded (llm_int8_threshold, default 6).")
    var int8Threshold: Float = 6

    @Flag(name: [.customLong("double-quant"), .customLong("double_quant")], help: "Double-quantize the 4-bit scales (8-bit, blocks of 256).")
    var doubleQuant = false

    @Option(name: .customLong("quant-blocksize"), help: "Elements per 4-bit block: 32 … 4096 (bitsandbytes' default 64).")
    var quantBlocksize: Int = 64

    @Option(name: .customLong("compute-dtype"), help: "Compute type recorded in the config (bnb_4bit_compute_dtype): f32 or bf16.")
    var computeDType: WeightDType = .f32

    @Option(name: .long, help: "Element type of the unquantized tensors (embeddings, norms, LM head): f32, bf16 or f16.")
    var dtype: ExportDType = .f32

    @Option(name: [.customLong("output"), .customLong("out")], help: "Directory to write the quantized model to.")
    var output: String

    @Flag(name: .long, help: "Replace the output directory if it exists and is not empty.")
    var overwrite = false

    @Option(name: .long, help: "Prompt of the self-check.")
    var checkPrompt = "The quick brown fox jumps over the lazy dog because"

    @Option(name: .long, help: "Also save the check's token ids and logits (quantized in memory, reloaded) to this safetensors file.")
    var saveCheck: String?

    func run() throws {
        let exportType = dtype
        let q = QuantizationConfig(method: quantize, blocksize: quantBlocksize, doubleQuant: doubleQuant, computeDType: computeDType,
                                   int8Threshold: int8Threshold)
        do { try q.validate() } catch { throw ValidationError("\(quantize == .int8 ? "--int8-threshold" : "--quant-blocksize"): \(error)") }

        var start = Date()
        let lm = try LoadedModel.load(model, dtype: .f32, quantization: q, backend: modelSource.backend)
        stderrPrint(String(format: "loaded and quantized %@ (%@) in %.2f s", lm.path, q.summary, Date().timeIntervalSince(start)))
        start = Date()
        let result = try lm.model.saveHuggingFace(to: output, tokenizer: lm.tokenizer, dtype: exportType, overwrite: overwrite)
        let saveTime = Date().timeIntervalSince(start)

        let check = try lm.prompts.selfCheck(checkPrompt, chat: false)
        let (tokens, before) = try lm.model.teacherForcedLogits(prompt: check.prompt, then: check.then)
        let reloaded = try LoadedModel.load(output, dtype: .f32, quantization: nil, backend: modelSource.backend)
        let after = try reloaded.model.teacherForcedLogits(prompt: check.prompt, then: check.then).logits

        print("wrote \(result.directory) (\(q.summary); other tensors \(exportType.rawValue); \(result.tensorCount) tensors, "
              + String(format: "%.1f MiB of weights, %.2f s)", Double(result.tensorBytes) / 1_048_576, saveTime))
        Merge.printFiles(of: result)
        print(String(format: "self-check on %d prompt tokens, max |logit diff| quantized in memory vs reloaded: %.3g%@",
                     tokens.count, maxAbsDiff(before.joined(), after.joined()),
                     exportType == .f32 ? "" : " (unquantized tensors rounded to \(exportType.rawValue))"))
        if let saveCheck {
            try Merge.saveCheck(to: saveCheck, tokens: tokens, logits: [("logits.model", before), ("logits.reloaded", after)],
                                metadata: ["prompt": checkPrompt, "quantization": q.summary])
        }
    }
}
