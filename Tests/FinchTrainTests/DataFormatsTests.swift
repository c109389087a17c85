import FinchCore
import FinchTokenizer
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// Each format's tokens and label masks, checked by decoding the trained runs.
final class DataFormatsTests: XCTestCase {
    let eos = "<|im_end|>"

    func testAlpacaPromptsAreQLoRAs() {
        XCTAssertEqual(AlpacaPrompt.source(instruction: "I", input: "X"),
                       "Below is an instruction that describes a task, paired with an input that provides further context. "
                       + "Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Input:\nX\n\n### Response: ")
        XCTAssertEqual(AlpacaPrompt.source(instruction: "I", input: ""),
                       "Below is an instruction that describes a task. Write a response that appropriately completes the request."
                       + "\n\n### Instruction:\nI\n\n### Response: ")
        XCTAssertEqual(AlpacaPrompt.source(instruction: "I", input: nil), AlpacaPrompt.source(instruction: "I", input: ""))
        // Braces in the values are not placeholders.
        XCTAssertTrue(AlpacaPrompt.source(instruction: "say {input}", input: "{instruction}")
            .contains("### Instruction:\nsay {input}\n\n### Input:\n{instruction}\n\n"))
    }

    func testAlpacaJSONArray() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/alpaca.json"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .alpaca)
        XCTAssertEqual(data.recordCount, 2)
        XCTAssertEqual(data.droppedCount, 0)
        XCTAssertEqual(data.truncatedCount, 0)
        XCTAssertEqual(data.examples.count, 2)

        let first = data.examples[0]
        let source0 = AlpacaPrompt.source(instruction: "Name the capital of France.", input: "")
        XCTAssertTrue(source0.hasSuffix("### Response: "))
        XCTAssertEqual(first.maskedPrefix(tok), source0)
        XCTAssertEqual(first.trainedRuns(tok), ["Paris" + eos])
        // qlora: source and target tokenized separately, EOS appended to the target.
        XCTAssertEqual(first.tokens, tok.encode32(source0) + tok.encode32("Paris") + [2])
        XCTAssertTrue(first.labelsMatchTokens)

        let second = data.examples[1]
        let source1 = AlpacaPrompt.source(instruction: "Translate to German.", input: "good morning")
        XCTAssertTrue(source1.contains("### Input:\ngood morning\n\n### Response: "))
        XCTAssertEqual(second.maskedPrefix(tok), source1)
        XCTAssertEqual(second.trainedRuns(tok), ["guten Morgen" + eos])
    }

    func testAlpacaJSONLinesWithoutOrNullInput() throws {
        let tok = try DataFixtures.tokenizer()
        let ex = try TrainingData.load(path: DataFixtures.path("data/alpaca_no_input.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(ex.count, 2)
        XCTAssertEqual(ex[0].maskedPrefix(tok), AlpacaPrompt.source(instruction: "Say hi.", input: nil))
        XCTAssertEqual(ex[0].trainedRuns(tok), ["Hi!" + eos])
        XCTAssertEqual(ex[1].maskedPrefix(tok), AlpacaPrompt.source(instruction: "Count to three.", input: nil))
        XCTAssertEqual(ex[1].trainedRuns(tok), ["1, 2, 3" + eos])
    }

    func testInputOutputIgnoresExtraKeysAndBlankLines() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/input_output.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .inputOutput)
        XCTAssertEqual(data.examples.count, 2)
        XCTAssertEqual(data.examples[0].maskedPrefix(tok), "### Human: What do finches eat? ### Assistant:")
        XCTAssertEqual(data.examples[0].trainedRuns(tok), [" Seeds, mostly." + eos])
        XCTAssertEqual(data.examples[1].decodedText(tok), "Two plus two is four." + eos)
        XCTAssertEqual(data.examples[1].trainedRuns(tok), [" four." + eos])
    }

    func testSelfInstruct() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/self_instruct.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .selfInstruct)
        XCTAssertEqual(data.examples[0].maskedPrefix(tok), "Write a haiku about rain.\n")
        XCTAssertEqual(data.examples[0].trainedRuns(tok), ["Soft rain on the roof" + eos])
    }

    func testOasstTrainsOnAssistantTurnsOnly() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/oasst.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .oasst)
        XCTAssertEqual(data.examples.count, 2)
        let a = data.examples[0]
        XCTAssertEqual(a.decodedText(tok), "### Human: What is a finch?### Assistant: A small bird.### Human: Can it sing?"
                       + "### Assistant: Yes, many finches sing." + eos)
        XCTAssertEqual(a.trainedRuns(tok), [" A small bird.", " Yes, many finches sing." + eos])
        XCTAssertTrue(a.labelsMatchTokens)
        // A transcript ending on a human turn gets no EOS; its last turn is masked.
        let b = data.examples[1]
        XCTAssertEqual(b.decodedText(tok), "### Human: Hello### Assistant: Hi there.### Human: Thanks")
        XCTAssertEqual(b.trainedRuns(tok), [" Hi there."])
    }

    func testOasstSegmentsJoinBackExactly() {
        let text = "Intro ### Human: a ### Assistant: b ### Assistant: c ### Human: d"
        let segs = OasstTranscript.segments(of: text)
        XCTAssertEqual(segs.map(\.text).joined(), text)
        XCTAssertEqual(segs.filter(\.trained).map(\.text), [" b ### Assistant: c "])
        XCTAssertEqual(OasstTranscript.segments(of: "no markers"), [TextSegment("no markers", trained: false)])
    }

    func testChatTrainsOnAssistantMessagesOnly() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/chat.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .chat)
        XCTAssertEqual(data.examples.count, 2)
        let a = data.examples[0]
        XCTAssertEqual(a.decodedText(tok), "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                       + "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                       + "<|im_start|>assistant\nCiao.<|im_end|>\n")
        XCTAssertEqual(a.trainedRuns(tok), ["Hello!<|im_end|>", "Ciao.<|im_end|>"])
        XCTAssertTrue(a.labelsMatchTokens)
        // Segment-wise tokenization equals tokenizing the whole rendering (special tokens cut cleanly).
        XCTAssertEqual(a.tokens, tok.encode32(a.decodedText(tok)))
        // ShareGPT's from/value with human/gpt roles.
        XCTAssertEqual(data.examples[1].trainedRuns(tok), ["4<|im_end|>"])
        XCTAssertEqual(data.examples[1].maskedPrefix(tok), "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    func testChatTrainOnSourceTrainsEverything() throws {
        let tok = try DataFixtures.tokenizer()
        let ex = try TrainingData.load(path: DataFixtures.path("data/chat.jsonl"), options: DatasetOptions(trainOnSource: true), tokenizer: tok)
        XCTAssertEqual(ex[0].labels, ex[0].tokens)
        XCTAssertEqual(ex[0].trainedRuns(tok), [ex[0].decodedText(tok)])
    }

    func testChatNeedsATemplate() throws {
        let path = DataFixtures.path("data/chat.jsonl")
        let e = assertDataError(try TrainingData.load(path: path, options: DatasetOptions(), tokenizer: try DataFixtures.bosTokenizer()))
        XCTAssertEqual(e, .noChatTemplate(path: path))
    }

    func testTextFileIsChunkedAndFullyTrained() throws {
        let tok = try DataFixtures.tokenizer()
        let path = DataFixtures.path("data/plain.txt")
        let raw = try String(contentsOfFile: path, encoding: .utf8)
        let all = tok.encode32(raw) + [2]
        let data = try TrainingData.loadDataset(path: path, options: DatasetOptions(maxSeqLen: 32), tokenizer: tok)
        XCTAssertEqual(data.format, .text)
        XCTAssertEqual(data.recordCount, 1)
        XCTAssertTrue(data.examples.allSatisfy { $0.count <= 32 && $0.labels == $0.tokens })
        XCTAssertEqual(data.examples.count, (all.count + 31) / 32)
        XCTAssertEqual(data.examples.flatMap(\.tokens), all)
        XCTAssertEqual(data.examples.dropLast().map(\.count), Array(repeating: 32, count: data.examples.count - 1))
    }

    func testTextChunkOfOneTokenIsDropped() throws {
        let tok = try DataFixtures.tokenizer()
        let path = DataFixtures.path("data/plain.txt")
        let n = tok.encode32(try String(contentsOfFile: path, encoding: .utf8)).count + 1
        let m = try XCTUnwrap((2...n).first { n % $0 == 1 })
        let data = try TrainingData.loadDataset(path: path, options: DatasetOptions(maxSeqLen: m), tokenizer: tok)
        XCTAssertEqual(data.droppedCount, 1)
        XCTAssertEqual(data.examples.count, n / m)
        XCTAssertEqual(data.examples.reduce(0) { $0 + $1.count }, n - 1)
    }

    func testTextJSONLinesAreSeparateDocuments() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/text.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(data.format, .text)
        XCTAssertEqual(data.examples.map { $0.trainedRuns(tok) },
                       [["Finches are small passerine birds." + eos], ["They have stout conical bills." + eos]])
    }

    func testOasstForcedToTextTrainsTheWholeTranscript() throws {
        let tok = try DataFixtures.tokenizer()
        let data = try TrainingData.loadDataset(path: DataFixtures.path("data/oasst.jsonl"),
                                                options: DatasetOptions(format: .text), tokenizer: tok)
        XCTAssertEqual(data.format, .text)
        XCTAssertEqual(data.examples[1].trainedRuns(tok), ["### Human: Hello### Assistant: Hi there.### Human: Thanks" + eos])
    }

    func testTrainOnSourceAndNoEOS() throws {
        let tok = try DataFixtures.tokenizer()
        let ex = try TrainingData.load(path: DataFixtures.path("data/self_instruct.jsonl"),
                                       options: DatasetOptions(trainOnSource: true, addEOS: false), tokenizer: tok)
        XCTAssertEqual(ex[0].labels, ex[0].tokens)
        XCTAssertEqual(ex[0].decodedText(tok), "Write a haiku about rain.\nSoft rain on the roof")
        let masked = try TrainingData.load(path: DataFixtures.path("data/oasst.jsonl"),
                                           options: DatasetOptions(trainOnSource: true), tokenizer: tok)
        XCTAssertEqual(masked[0].labels, masked[0].tokens)
    }

    func testBOSIsPrependedAndMaskedWhenTheTokenizerAddsOne() throws {
        let tok = try DataFixtures.bosTokenizer()
        let ex = try TrainingData.load(path: DataFixtures.path("data/input_output.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(ex[1].tokens, [0] + tok.encode32("Two plus two is") + tok.encode32(" four.") + [2])
        XCTAssertEqual(ex[1].labels.first, CrossEntropy.ignoreIndex)
        XCTAssertEqual(ex[1].trainedRuns(tok), [" four." + eos])
        // oasst: BOS then the transcript.
        let o = try TrainingData.load(path: DataFixtures.path("data/oasst.jsonl"), options: DatasetOptions(), tokenizer: tok)
        XCTAssertEqual(o[0].tokens.first, 0)
        XCTAssertEqual(o[0].trainedRuns(tok), [" A small bird.", " Yes, many finches sing." + eos])
    }

    /// qlora's own data sets (Tests/Fixtures/datasets, committed as they are).
    func testRealQLoRADatasets() throws {
        let oa = try Fixtures.required("datasets/oa_questions.jsonl")
        let tok = try DataFixtures.tokenizer()
        XCTAssertEqual(try TrainingData.detectFormat(path: oa), .inputOutput)
        let data = try TrainingData.loadDataset(path: oa, options: DatasetOptions(maxSeqLen: 4096), tokenizer: tok)
        XCTAssertEqual(data.recordCount, 953)
        XCTAssertEqual(data.examples.count + data.droppedCount, 953)
        XCTAssertTrue(data.examples.allSatisfy { $0.labelsMatchTokens && $0.count <= 4096 })
        // qlora's MMLU file is JSON lines under a .json name.
        let mmlu = (oa as NSString).deletingLastPathComponent + "/mmlu_zero_shot_val.json"
        XCTAssertEqual(try TrainingData.detectFormat(path: mmlu), .inputOutput)
    }
}
