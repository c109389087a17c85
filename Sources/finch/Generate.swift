import ArgumentParser
import FinchCore
import FinchFormats
import FinchEval
import FinchModels
import FinchTokenizer
import FinchTrain
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt (or every line of a file of prompts).",
        discussion: """
            The continuation alone goes to stdout; diagnostics go to stderr. With --prompts-file, each result is a JSON \
            line {"prompt", "text", "finish_reason"}. With --data FILE --output answers.jsonl, every item of a dataset \
            in any format finch train reads is answered (the prompt is what training masks, the dataset's answer is \
            kept as "reference"), one JSON line per item with its id, written as it is made: run the same command \
            again to resume a stopped run. Item k samples with seed --seed + k.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingFlags

    @Option(name: .long, help: "A file with one prompt per line (generated as one batch).")
    var promptsFile: String?

    @Option(name: .long, help: "Answer every item of this dataset (any format finch train reads); needs --output.")
    var data: String?
    @Option(name: .long, help: "Dataset format for --data (default: detected).")
    var format: DatasetFormat?
    @Option(name: .long, help: "Answers file for --data (JSON lines; resumed if it exists).")
    var output: String?
    @Option(name: .long, help: "Items generated together with --data.")
    var batchSize = 8
    @Option(name: .long, help: "Answer only the first N items of --data.")
    var limit: Int?

    @Flag(name: .long, help: "Wrap the prompt in the model's chat template as a user message.")
    var chat = false

    @Option(name: .long, help: "System message (with --chat).")
    var system: String?

    @Argument(help: "The prompt.")
    var prompt: String?

    func run() throws {
        if let data { return try answerDataset(data) }
        if output != nil { throw ValidationError("--output goes with --data") }
        var prompts: [String]
        if let promptsFile {
            guard let data = FileManager.default.contents(atPath: promptsFile), let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("cannot read prompts file \(promptsFile)")
            }
            prompts = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            if prompts.isEmpty { throw ValidationError("\(promptsFile) has no prompts") }
            if prompt != nil { throw ValidationError("give either a PROMPT or --prompts-file, not both") }
        } else if let prompt {
            prompts = [prompt]
        } else {
            throw ValidationError("give a PROMPT or --prompts-file")
        }
        let lm = try modelOptions.load()
        let tokens = try prompts.map { chat ? try lm.prompts.tokens(user: $0, system: system) : lm.prompts.tokens(prompt: $0) }
        let generator = Generator(lm)
        let start = Date()
        let single = prompts.count == 1 && promptsFile == nil
        let results = try generator.generate(promptTokens: tokens, options: sampling.options) { _, text in
            if single { stdoutWrite(text) }
        }
        if single { stdoutWrite("\n") }
        try report(prompts, results, single: single, since: start)
    }

    /// Prints the answers as JSON lines (one prompt: already streamed) and the speed.
    func report(_ prompts: [String], _ results: [GenerationResult], single: Bool, since start: Date) throws {
        let elapsed = Date().timeIntervalSince(start)
        if !single {
            for (p, r) in zip(prompts, results) {
                let line = JSONValue.sortedObject(["prompt": .string(p), "text": .string(r.text),
                                                   "finish_reason": .string(r.finishReason.rawValue)])
                stdoutWrite(line.serialized() + "\n")
            }
        }
        let newTokens = results.reduce(0) { $0 + $1.tokens.count }
        stderrPrint(String(format: "%d new tokens in %.2f s (%.1f tokens/s)", newTokens, elapsed, Double(newTokens) / elapsed))
    }
}

extension Generate {
    /// `--data FILE --output answers.jsonl`: every item answered, resumably.
    func answerDataset(_ data: String) throws {
        guard let output else { throw ValidationError("--data needs --output FILE (the answers, JSON lines)") }
        if prompt != nil || promptsFile != nil { throw ValidationError("give either --data or a PROMPT / --prompts-file") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        let lm = try modelOptions.load()
        var items = try TrainingData.promptItems(path: data, format: format, tokenizer: lm.tokenizer, chat: chat, system: system)
        if let limit { items = Array(items.prefix(max(0, limit))) }
        let name = ModelStore.displayName(of: modelOptions.base.model, path: lm.path)
            + (modelOptions.adapter.map { "+" + ($0 as NSString).lastPathComponent } ?? "")
        var runner = BatchPredictions(generator: Generator(lm), options: sampling.options, modelName: name)
        runner.batchSize = batchSize
        let outcome = try runner.run(items: items, output: output) { done, total in stderrPrint("answered \(done)/\(total)") }
        if outcome.resumed > 0 { stderrPrint("resumed: \(outcome.resumed) items were already in \(output)") }
        stderrPrint(String(format: "%d items, %d new tokens in %.1f s (%.1f tokens/s); answers in %@", outcome.written,
                           outcome.generatedTokens, outcome.seconds, Double(outcome.generatedTokens) / max(outcome.seconds, 1e-9), output))
    }
}
