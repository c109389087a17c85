import FinchCore
import FinchEval
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTokenizer
import FinchTrain
import Foundation
import XCTest

final class BatchPredictionsTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("predict-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir + "/" + name
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// The prompt of each format is what training masks, tokenized as training tokenizes it.
    func testPromptsOfEveryFormat() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let tok = lm.tokenizer
        let alpaca = try TrainingData.promptItems(path: try write("a.jsonl", #"{"instruction": "Add.", "input": "1 and 2", "output": "3"}"# + "\n"),
                                                  tokenizer: tok)
        XCTAssertEqual(alpaca[0].question, AlpacaPrompt.source(instruction: "Add.", input: "1 and 2"))
        XCTAssertEqual(alpaca[0].reference, "3")
        XCTAssertEqual(alpaca[0].id, .number("0"))
        let train = try TrainingData.load(path: dir + "/a.jsonl", options: DatasetOptions(maxSeqLen: 512), tokenizer: tok)[0]
        let masked = zip(train.tokens, train.labels).prefix { $0.1 == CrossEntropy.ignoreIndex }.map { Int($0.0) }
        XCTAssertEqual(alpaca[0].tokens, masked, "the prompt is exactly what training masks")

        let oasst = try TrainingData.promptItems(path: try write("o.jsonl", ####"{"text": "### Human: Hi.### Assistant: Hello!### Human: Name a bird.### Assistant: A finch."}"#### + "\n"),
                                                 tokenizer: tok)
        XCTAssertEqual(oasst[0].question, "### Human: Hi.### Assistant: Hello!### Human: Name a bird.### Assistant:")
        XCTAssertEqual(oasst[0].reference, " A finch.")

        let vicuna = try TrainingData.promptItems(path: try Fixtures.required("datasets/vicuna_questions.jsonl"), tokenizer: tok, chat: true)
        XCTAssertEqual(vicuna.count, 80)
        XCTAssertEqual(vicuna[0].id, .number("1"))
        XCTAssertEqual(vicuna[0].question, "How can I improve my time management skills?")
        let rendered = try tok.applyChatTemplate([ChatMessage(role: "user", content: vicuna[0].question)], addGenerationPrompt: true)
        XCTAssertEqual(vicuna[0].tokens, tok.encode(rendered))

        let chat = try TrainingData.promptItems(path: try write("c.jsonl", #"{"id": "x", "messages": [{"role": "user", "content": "Line one\nline two"}, {"role": "assistant", "content": "Yes."}]}"# + "\n"),
                                                tokenizer: tok)
        XCTAssertEqual(chat[0].id, .string("x"))
        XCTAssertEqual(chat[0].question, "Line one\nline two")
        XCTAssertEqual(chat[0].reference, "Yes.")
        XCTAssertEqual(chat[0].tokens, tok.encode(try tok.applyChatTemplate([ChatMessage(role: "user", content: "Line one\nline two")], addGenerationPrompt: true)))

        XCTAssertThrowsError(try TrainingData.promptItems(path: try write("t.txt", "plain text"), tokenizer: tok)) {
            XCTAssertTrue("\($0)".contains("--prompts-file"), "\($0)")
        }
    }

    /// A run stopped part-way (a half-written last line included) and resumed writes the file an
    /// unbroken run writes, sampling included.
    func testResumedRunWritesWhatAnUnbrokenRunWrites() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let data = try write("q.jsonl", (1...5).map { #"{"question_id": \#($0), "text": "Tell me fact number \#($0) about birds."}"# }.joined(separator: "\n") + "\n")
        let items = try TrainingData.promptItems(path: data, tokenizer: lm.tokenizer, chat: true)
        var runner = BatchPredictions(generator: Generator(lm),
                                      options: GenerationOptions(maxNewTokens: 6, sampling: SamplingOptions(temperature: 0.8, topP: 0.9), seed: 11),
                                      modelName: "smollm2")
        runner.batchSize = 2
        let whole = dir + "/whole.jsonl"
        let first = try runner.run(items: items, output: whole)
        XCTAssertEqual(first.written, 5); XCTAssertEqual(first.resumed, 0)
        let full = try String(contentsOfFile: whole, encoding: .utf8)
        let lines = full.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 5)
        let line0 = try JSONParser.parse(String(lines[0]))
        XCTAssertEqual(line0["id"], .number("1"))
        XCTAssertEqual(line0["question"]?.stringValue, "Tell me fact number 1 about birds.")
        XCTAssertNotNil(line0["output"]?.stringValue)
        XCTAssertEqual(line0["model"]?.stringValue, "smollm2")

        // Stopped after 3 items, in the middle of writing the 4th.
        let broken = dir + "/broken.jsonl"
        try (lines.prefix(3).joined(separator: "\n") + "\n" + lines[3].prefix(10)).write(toFile: broken, atomically: true, encoding: .utf8)
        let second = try runner.run(items: items, output: broken)
        XCTAssertEqual(second.resumed, 3); XCTAssertEqual(second.written, 2)
        XCTAssertEqual(try String(contentsOfFile: broken, encoding: .utf8), full)
        // Nothing left: a third run writes nothing.
        XCTAssertEqual(try runner.run(items: items, output: broken).written, 0)
        // A file of another dataset is refused.
        let other = try write("other.jsonl", #"{"id": 99, "output": "x"}"# + "\n")
        XCTAssertThrowsError(try runner.run(items: items, output: other)) { XCTAssertTrue("\($0)".contains("id 99"), "\($0)") }
    }
}
