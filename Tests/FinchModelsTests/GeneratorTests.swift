import FinchCore
import FinchTokenizer
@testable import FinchModels
import FinchTestSupport
import XCTest

/// Generation on the tiny checkpoint loaded as a user would (HF directory with its tokenizer).
final class GeneratorTests: XCTestCase {
    static let lm: LoadedModel = try! LoadedModel.load(Fixtures.path("tiny-llama/hf"))
    let prompt = "The quick brown fox"

    func testLoadsHFDirectoryWithTokenizerAndTemplate() throws {
        let lm = Self.lm
        XCTAssertEqual(lm.tokenizer.vocabSize, 320)
        XCTAssertEqual(lm.tokenizer.eosTokenId, 2)
        let text = try lm.tokenizer.applyChatTemplate([ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
        XCTAssertEqual(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        // The GGUF copy of the same model loads with the same tokenizer and config.
        let g = try LoadedModel.load(Fixtures.path("tiny-llama/tiny.gguf"))
        XCTAssertEqual(g.tokenizer.encode(prompt), lm.tokenizer.encode(prompt))
        XCTAssertEqual((g.model as! DecoderModel).spec.hiddenSize, (lm.model as! DecoderModel).spec.hiddenSize)
    }

    func testGreedyMatchesTransformersAndStreamsWholeText() throws {
        let e = TinyLlamaTests.expected
        var pieces: [String] = []
        let r = try Generator(Self.lm).generate(promptTokens: [Array(e.ids.prefix(5))],
                                                options: GenerationOptions(maxNewTokens: 12, stopTokenIds: [])) { _, t in
            pieces.append(t)
        }[0]
        XCTAssertEqual(r.tokens, e.greedy12_from_short)
        XCTAssertEqual(r.finishReason, .length)
        XCTAssertEqual(pieces.joined(), r.text)
        XCTAssertEqual(r.text, Self.lm.tokenizer.decode(r.tokens))
    }

    func testSamplingIsSeededAndBatchEqualsSingleRuns() throws {
        let gen = Generator(Self.lm)
        let opts = GenerationOptions(maxNewTokens: 10, sampling: SamplingOptions(temperature: 1.2, topP: 0.95), seed: 42,
                                     stopTokenIds: [])
        let a = try gen.generate(prompts: [prompt], options: opts)[0]
        let b = try gen.generate(prompts: [prompt], options: opts)[0]
        XCTAssertEqual(a.tokens, b.tokens)
        var other = opts; other.seed = 43
        let c = try gen.generate(prompts: [prompt], options: other)[0]
        XCTAssertNotEqual(a.tokens, c.tokens)
        // In a batch, sequence i uses seed + i: the first equals the single run with `seed`,
        // the second the single run with `seed + 1`.
        let batch = try gen.generate(prompts: [prompt, prompt], options: opts)
        XCTAssertEqual(batch[0].tokens, a.tokens)
        XCTAssertEqual(batch[1].tokens, c.tokens)
    }

    func testStopStringEndsOutputBeforeIt() throws {
        let gen = Generator(Self.lm)
        let free = try gen.generate(prompts: [prompt], options: GenerationOptions(maxNewTokens: 16, stopTokenIds: []))[0]
        XCTAssertGreaterThan(free.text.count, 4)
        // Stop at a piece of the free-running output: the result is the text before it.
        let chars = Array(free.text)
        let stop = String(chars[3..<min(6, chars.count)])
        var streamed = ""
        let r = try gen.generate(prompts: [prompt], options: GenerationOptions(maxNewTokens: 16, stopStrings: [stop], stopTokenIds: [])) {
            streamed += $1
        }[0]
        XCTAssertEqual(r.finishReason, .stopString)
        let expected = String(free.text[..<free.text.range(of: stop)!.lowerBound])
        XCTAssertEqual(r.text, expected)
        XCTAssertEqual(streamed, expected, "streaming never shows the stop string")
    }

    func testEndOfSequenceTokenStops() throws {
        let gen = Generator(Self.lm)
        let free = try gen.generate(prompts: [prompt], options: GenerationOptions(maxNewTokens: 8, stopTokenIds: []))[0]
        // The first position (after the first) whose token did not occur before it.
        let i = try XCTUnwrap((1..<free.tokens.count).first { !free.tokens[..<$0].contains(free.tokens[$0]) })
        let r = try gen.generate(prompts: [prompt], options: GenerationOptions(maxNewTokens: 8, stopTokenIds: [free.tokens[i]]))[0]
        XCTAssertEqual(r.finishReason, .endOfSequence)
        XCTAssertEqual(r.tokens, Array(free.tokens.prefix(i + 1)))   // the stop token is reported, as transformers does
        XCTAssertEqual(r.text, Self.lm.tokenizer.decode(Array(free.tokens.prefix(i))))
    }

    func testBadOptionsAreRejected() {
        let gen = Generator(Self.lm)
        XCTAssertThrowsError(try gen.generate(prompts: [prompt], options: GenerationOptions(sampling: SamplingOptions(topP: 2))))
        XCTAssertThrowsError(try gen.generate(promptTokens: [[]], options: GenerationOptions()))
        XCTAssertThrowsError(try gen.generate(prompts: [prompt], options: GenerationOptions(maxNewTokens: -1)))
    }

    func testUnknownModelNameSaysWhatToDo() {
        XCTAssertThrowsError(try LoadedModel.load("/no/such/model.gguf")) { e in
            XCTAssertTrue("\(e)".contains("/no/such/model.gguf"), "\(e)")
            XCTAssertTrue("\(e)".contains("known name"), "\(e)")
        }
    }
}
