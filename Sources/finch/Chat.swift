import ArgumentParser
import FinchCore
import FinchModels
import FinchTokenizer
import Foundation

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model using its chat template.",
        discussion: "Reads one user message per line from stdin (interactive or piped) and streams each reply to stdout. /reset clears the conversation, /exit quits.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingFlags

    @Option(name: .long, help: "System message.")
    var system: String?

    func run() throws {
        let lm = try modelOptions.load()
        let generator = Generator(lm)
        let interactive = isatty(0) != 0
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        let initial = messages
        while true {
            if interactive { stderrWrite("> ") }
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" || text == "/quit" { break }
            if text == "/reset" { messages = initial; stderrPrint("(conversation cleared)"); continue }
            messages.append(ChatMessage(role: "user", content: text))
            let tokens = try lm.prompts.tokens(chat: messages)
            let results = try generator.generate(promptTokens: [tokens], options: sampling.options) { _, t in stdoutWrite(t) }
            stdoutWrite("\n")
            messages.append(ChatMessage(role: "assistant", content: results[0].text))
        }
    }
}

func stderrWrite(_ s: String) {
    FileHandle.standardError.write(s.data(using: .utf8)!)
}
