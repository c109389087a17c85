import FinchModels
@testable import FinchServe
import FinchTokenizer
import XCTest

/// Continuous batching on the real SmolLM2 with three adapters: concurrent sequences (mixed
/// adapters, the base among them) give what each gives alone.
final class BatchEngineTests: XCTestCase {
    static let questions = ["What is the capital of France?", "Write a haiku about autumn leaves.",
                            "List three uses of a paperclip.", "Explain what a prime number is."]

    func chatPrompt(_ lm: LoadedModel, _ q: String) throws -> [Int] {
        try lm.tokenizer.encodeChat([.user(q)], addGenerationPrompt: true)
    }

    func greedy(_ prompt: [Int], adapter: String?, maxTokens: Int = 24) -> GenerationRequest {
        GenerationRequest(promptTokens: prompt, adapter: adapter, maxTokens: maxTokens, logprobs: 2)
    }

    func testConcurrentMixedAdaptersMatchEachAlone() throws {
        let lm = try ServeFixtures.model()
        let adapters: [String?] = [nil, "lora", "dora", "rslora"]
        var requests: [GenerationRequest] = []
        for q in Self.questions.prefix(2) {
            for a in adapters { requests.append(greedy(try chatPrompt(lm, q), adapter: a)) }
        }
        let (batched, reports) = ServeFixtures.run(requests, lm: lm)
        XCTAssertEqual(reports.map(\.sequences).max(), 8, "all 8 decode in one batch")
        for (i, r) in requests.enumerated() {
            let alone = ServeFixtures.run([r], lm: lm).events[0]
            if assertSameGreedy(batched[i], alone, "request \(i) (adapter \(r.adapter ?? "base"))") == nil {
                XCTAssertEqual(batched[i].finishReason, alone.finishReason)
            }
        }
        // The adapters change the answer's scores: each differs from the base on the same prompt.
        for q in 0..<2 {
            let base = batched[q * 4].tokenLogprobs[0].logprob
            for k in 1..<4 { XCTAssertNotEqual(batched[q * 4 + k].tokenLogprobs[0].logprob, base, "adapter \(adapters[k]!)") }
        }
    }

    func testBaseAnswersAsWithNoAdapterLoaded() throws {
        let lm = try ServeFixtures.model()
        let plain = try LoadedModel.load(lm.path)
        let prompt = try chatPrompt(lm, Self.questions[2])
        let withAdapters = ServeFixtures.run([greedy(prompt, adapter: nil)], lm: lm).events[0]
        let without = ServeFixtures.run([greedy(prompt, adapter: nil)], lm: plain).events[0]
        XCTAssertEqual(withAdapters.generatedTokens, without.generatedTokens)
        XCTAssertEqual(withAdapters.tokenLogprobs, without.tokenLogprobs, "bit for bit")
    }

    func testLateArrivalsJoinTheRunningBatch() throws {
        let lm = try ServeFixtures.model()
        let engine = BatchEngine(lm: lm, maxBatch: 4)
        let p = try chatPrompt(lm, Self.questions[0])
        var events = [[GenerationEvent]](repeating: [], count: 6)
        engine.submit(greedy(p, adapter: nil, maxTokens: 12), emit: { events[0].append($0) })
        for _ in 0..<3 { engine.step() }
        // Five more arrive while the first decodes: three join it, two wait for places.
        for i in 1..<6 {
            engine.submit(greedy(p, adapter: i % 2 == 0 ? "lora" : nil, maxTokens: 12), emit: { events[i].append($0) })
        }
        let joined = engine.step()!
        XCTAssertEqual(joined.sequences, 4)
        XCTAssertEqual(joined.prefilling, 3)
        XCTAssertEqual(engine.waitingCount, 2)
        while engine.step() != nil {}
        let alone = ServeFixtures.run([greedy(p, adapter: nil, maxTokens: 12)], lm: lm).events[0]
        let aloneLoRA = ServeFixtures.run([greedy(p, adapter: "lora", maxTokens: 12)], lm: lm).events[0]
        for i in 0..<6 { assertSameGreedy(events[i], i % 2 == 0 && i > 0 ? aloneLoRA : alone, "sequence \(i)") }
    }

    func testChunkedPromptReadingMatchesWhole() throws {
        let lm = try ServeFixtures.model()
        let p = try chatPrompt(lm, Self.questions[3])
        let whole = ServeFixtures.run([greedy(p, adapter: "dora")], lm: lm, stepTokens: 512).events[0]
        let chunked = ServeFixtures.run([greedy(p, adapter: "dora")], lm: lm, maxBatch: 2, stepTokens: 7).events[0]
        assertSameGreedy(chunked, whole, "prompt read 7 tokens a step")
    }

    /// Echo scoring (lm-eval's loglikelihood): the prompt's log-probabilities equal a full forward
    /// pass's log-softmax, across the 256-row scoring chunks.
    func testPromptScoresMatchAFullForward() throws {
        let lm = try ServeFixtures.model()
        let text = String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40)
        let prompt = Array(lm.tokenizer.encode(text).prefix(300))
        XCTAssertEqual(prompt.count, 300)
        for adapter in [nil, "lora"] as [String?] {
            let r = GenerationRequest(promptTokens: prompt, adapter: adapter, maxTokens: 0, logprobs: 3, promptLogprobs: true)
            let events = ServeFixtures.run([r], lm: lm).events[0]
            XCTAssertEqual(events.finishReason, .length)
            XCTAssertTrue(events.generatedTokens.isEmpty)
            let scores = try XCTUnwrap(events.promptScores)
            XCTAssertEqual(scores.count, prompt.count)
            XCTAssertNil(scores[0])
            lm.model.setActiveAdapter(adapter)
            let logits = try lm.causal.logits(tokens: [prompt])[0]
            lm.model.setActiveAdapter(nil)
            var worst: Float = 0
            for j in 1..<prompt.count {
                let row = logits[j - 1]
                let m = row.max()!
                let lse = m + Float(log(row.reduce(0.0) { $0 + exp(Double($1 - m)) }))
                let s = try XCTUnwrap(scores[j])
                XCTAssertEqual(s.token, prompt[j])
                worst = max(worst, abs(s.logprob - (row[prompt[j]] - lse)))
                XCTAssertEqual(s.top.count, 3)
                XCTAssertEqual(s.top[0].token, row.indices.max { row[$0] < row[$1] })
            }
            XCTAssertLessThan(worst, 2e-4, "adapter \(adapter ?? "base")")
        }
    }

    func testCancelledSequenceStopsAndOthersGoOn() throws {
        let lm = try ServeFixtures.model()
        let engine = BatchEngine(lm: lm, maxBatch: 4)
        let p = try chatPrompt(lm, Self.questions[1])
        var kept: [GenerationEvent] = [], dropped: [GenerationEvent] = []
        var cancel = false
        engine.submit(greedy(p, adapter: "lora", maxTokens: 20), emit: { kept.append($0) })
        engine.submit(greedy(p, adapter: nil, maxTokens: 20), emit: { dropped.append($0) }, isCancelled: { cancel })
        while dropped.generatedTokens.count < 3 { engine.step() }
        cancel = true
        while engine.step() != nil {}
        XCTAssertEqual(dropped.generatedTokens.count, 3)
        XCTAssertNil(dropped.finishReason)
        XCTAssertEqual(kept.generatedTokens.count, 20)
        XCTAssertTrue(engine.isIdle)
    }

    func testStopStringEndsTheTextBeforeIt() throws {
        let lm = try ServeFixtures.model()
        let p = try chatPrompt(lm, Self.questions[0])
        let free = ServeFixtures.run([greedy(p, adapter: nil)], lm: lm).events[0]
        let text = try XCTUnwrap(free.finalText)
        let words = text.split(separator: " ")
        XCTAssertGreaterThan(words.count, 3, text)
        let stop = String(words[2])
        var r = greedy(p, adapter: nil)
        r.stopStrings = [stop]
        let events = ServeFixtures.run([r], lm: lm).events[0]
        XCTAssertEqual(events.finishReason, .stopString)
        let cut = String(text[..<text.range(of: stop)!.lowerBound])
        XCTAssertEqual(events.finalText, cut)
        XCTAssertEqual(events.streamedText, cut, "streamed pieces add up to the text, never past the stop")
    }

    func testBadRequestsFailAlone() throws {
        let lm = try ServeFixtures.model()
        let good = greedy(try chatPrompt(lm, Self.questions[0]), adapter: nil, maxTokens: 4)
        var badToken = good; badToken.promptTokens = [1, lm.model.vocabSize]
        var badAdapter = good; badAdapter.adapter = "missing"
        let (events, _) = ServeFixtures.run([badToken, good, badAdapter], lm: lm)
        guard case .failed(let why) = events[0].last! else { return XCTFail("\(events[0])") }
        XCTAssertTrue(why.contains("outside the vocabulary"), why)
        guard case .failed(let why2) = events[2].last! else { return XCTFail("\(events[2])") }
        XCTAssertTrue(why2.contains("missing"), why2)
        XCTAssertEqual(events[1].generatedTokens.count, 4)
    }
}
