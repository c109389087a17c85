import ArgumentParser
import FinchCore
import FinchFormats
import FinchModels
import FinchServe
import Foundation

struct BenchBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Batched decoding of the serving engine (no HTTP): tokens/s and step time at each batch size.",
        discussion: "B sequences (chat prompts, greedy, end-of-sequence ignored) decode together for --tokens steps after their prompts are read; the median step time of the decode steps gives tokens/s = B / step. With --adapters, the sequences cycle through the base and each adapter (mixed-adapter batches).")

    @OptionGroup var modelOptions: BaseModelOptions
    @Option(name: .long, parsing: .upToNextOption, help: "Batch sizes.")
    var batch: [Int] = [1, 4, 16, 64]
    @Option(name: .long, help: "Decode steps measured per batch size.")
    var tokens = 64
    @Option(name: .long, help: "Adapter directories (PEFT) to mix into the batch.")
    var adapters: [String] = []

    func run() throws {
        let lm = try modelOptions.load()
        var names: [String?] = [nil]
        for (i, dir) in adapters.enumerated() {
            try lm.model.loadAdapter(directory: dir, name: "a\(i)")
            names.append("a\(i)")
        }
        lm.model.setActiveAdapter(nil)
        let questions = ["What is the capital of France?", "Write a haiku about autumn.", "Explain photosynthesis briefly.",
                         "List three uses of a paperclip."]
        let prompts = try questions.map { try lm.tokenizer.encodeChat([.user($0)], addGenerationPrompt: true) }
        for b in batch {
            let engine = BatchEngine(lm: lm, maxBatch: b, stepTokens: 4096)
            for i in 0..<b {
                engine.submit(GenerationRequest(promptTokens: prompts[i % prompts.count], adapter: names[i % names.count],
                                                maxTokens: tokens + 1, stopTokenIds: []), emit: { _ in })
            }
            var decode: [Double] = []
            while true {
                let t0 = DispatchTime.now().uptimeNanoseconds
                guard let r = engine.step() else { break }
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if r.prefilling == 0 && r.sequences == b { decode.append(dt) }
            }
            let step = median(decode)
            printResultLine([
                "bench": .string("batch"), "model": .string(String(lm.path.split(separator: "/").last!)),
                "weights": .string(lm.model.weightSummary), "adapters": .int(names.count - 1), "batch": .int(b),
                "step_ms": .number(String(format: "%.2f", step * 1000)), "tokens_per_s": .number(String(format: "%.1f", Double(b) / step)),
                "steps": .int(decode.count), "cpu": .string(CPUInfo.model), "cores": .int(ProcessInfo.processInfo.activeProcessorCount)])
        }
    }
}
