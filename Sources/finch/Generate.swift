import ArgumentParser
import FinchCore
import FinchModels
import FinchTokenizer
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt (or every line of a file of prompts).",
        discussion: "The continuation alone goes to stdout; diagnostics go to stderr. With --prompts-file, each result is a JSON line {\"prompt\", \"text\", \"finish_reason\"}.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingFlags

    @Option(name: .long, help: "A file with one prompt per line (generated as one batch).")
    var promptsFile: String?

    @Flag(name: .long, help: "Wrap the prompt in the model's chat template as a user message.")
    var chat = false

    @Option(name: .long, help: "System message (with --chat).")
    var system: String?

    @Argument(help: "The prompt.")
    var prompt: String?

    func run() throws {
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
        if chat {
            prompts = try prompts.map { p in
                var messages: [ChatMessage] = []
                if let system { messages.append(ChatMessage(role: "system", content: system)) }
                messages.append(ChatMessage(role: "user", content: p))
                return try lm.tokenizer.applyChatTemplate(messages, addGenerationPrompt: true)
            }
        }
        let generator = Generator(lm)
        let start = Date()
        let single = prompts.count == 1 && promptsFile == nil
        // A rendered chat template already holds its special tokens.
        let tokens = prompts.map { lm.tokenizer.encode($0, addSpecialTokens: !chat) }
        let results = try generator.generate(promptTokens: tokens, options: sampling.options) { _, text in
            if single { stdoutWrite(text) }
        }
        let elapsed = Date().timeIntervalSince(start)
        if single {
            stdoutWrite("\n")
        } else {
            for (p, r) in zip(prompts, results) {
                let obj: [String: String] = ["prompt": p, "text": r.text, "finish_reason": r.finishReason.rawValue]
                let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
                stdoutWrite(String(decoding: data, as: UTF8.self) + "\n")
            }
        }
        let newTokens = results.reduce(0) { $0 + $1.tokens.count }
        stderrPrint(String(format: "%d new tokens in %.2f s (%.1f tokens/s)", newTokens, elapsed, Double(newTokens) / elapsed))
    }
}
