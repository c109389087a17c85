import FinchFormats
import FinchModels
import FinchTokenizer
import FinchTrain
import Foundation

/// `sample_prompts`: at every evaluation the model being trained answers a few prompts (greedy, at most
/// `sample_max_tokens` tokens), one line each in `RUN_DIR/samples.jsonl` (`{"step", "prompt", "answer"}`),
/// which the live training page shows. Prompts: a text file of one prompt a line (through the chat
/// template when the model has one), or a data file in any format training reads (its prompts formatted
/// as training formats them).
public final class SampleAnswersEvaluator: TrainingEvaluator {
    public let model: LoadedModel
    public let items: [PromptItem]
    public let maxNewTokens: Int
    let file: JSONLinesFile

    public static let fileName = "samples.jsonl"

    public init(model: LoadedModel, items: [PromptItem], maxNewTokens: Int, runDirectory: String) throws {
        self.model = model; self.items = items; self.maxNewTokens = maxNewTokens
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        file = try JSONLinesFile(path: (runDirectory as NSString).appendingPathComponent(Self.fileName))
    }

    /// The evaluator a run's settings ask for (`sample_prompts`), or nil.
    public static func forRun(_ c: TrainingConfig, model: LoadedModel, runDirectory: String) throws -> SampleAnswersEvaluator? {
        guard let path = c.samplePrompts else { return nil }
        let items: [PromptItem]
        if path.hasSuffix(".txt") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw DataError.invalidOptions(reason: "\(path): cannot read the sample prompts file")
            }
            let prompts = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            items = try prompts.enumerated().map { i, p in
                let tokens = model.tokenizer.chatTemplate != nil
                    ? try model.prompts.tokens(chat: [ChatMessage(role: "user", content: p)]) : model.prompts.tokens(prompt: p)
                return PromptItem(id: .int(i), question: p, tokens: tokens, reference: nil)
            }
        } else {
            items = try TrainingData.promptItems(path: path, tokenizer: model.tokenizer)
        }
        guard !items.isEmpty else { throw DataError.invalidOptions(reason: "\(path): no sample prompts in it") }
        return try SampleAnswersEvaluator(model: model, items: items, maxNewTokens: c.sampleMaxTokens, runDirectory: runDirectory)
    }

    public func evaluate(step: Int) throws -> [String: Double] {
        let results = try Generator(model).generate(promptTokens: items.map(\.tokens), options: GenerationOptions(maxNewTokens: maxNewTokens))
        try file.append(zip(items, results).map { item, r in
            .object([("step", .int(step)), ("prompt", .string(item.question)), ("answer", .string(r.text))])
        })
        return [:]
    }
}
