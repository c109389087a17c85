import FinchEval
import FinchFormats
import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// Perplexity on SmolLM2 against transformers (Scripts/fixtures/make_perplexity_reference.py):
/// non-overlapping windows and the strided sliding window, T = 256, S = 128, ~4k tokens.
final class PerplexityTests: XCTestCase {
    func testMatchesTransformersForBothProtocols() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let ref = try JSONParser.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))))
        let ids = ref["ids"]!.arrayValue!.map { $0.intValue! }
        let text = try String(contentsOfFile: Fixtures.path("perplexity/oa_answers.txt"), encoding: .utf8)
        XCTAssertEqual(lm.tokenizer.encode(text, addSpecialTokens: true), ids, "Finch tokenizes the text as transformers does")
        for case_ in ref["cases"]!.arrayValue! {
            let t = case_["max_seq_len"]!.intValue!
            let p: Perplexity.Method = case_["protocol"]!.stringValue! == "windows"
                ? .windows(maxSeqLen: t) : .strided(maxSeqLen: t, stride: case_["stride"]!.intValue!)
            let r = try Perplexity.evaluate(lm.model, tokens: ids, method: p)
            XCTAssertEqual(r.tokens, case_["tokens"]!.intValue!, "\(p)")
            let want = case_["nll_sum"]!.doubleValue!
            XCTAssertEqual(r.nllSum, want, accuracy: 1e-4 * want, "\(p)")
            XCTAssertEqual(r.perplexity, case_["perplexity"]!.doubleValue!, accuracy: 1e-4 * r.perplexity, "\(p)")
            XCTAssertEqual(r.standardError, case_["stderr"]!.doubleValue!, accuracy: 1e-3 * r.standardError, "\(p)")
        }
    }

    func testWindowPlans() {
        // 10 tokens, windows of 4: [0,4) [4,8) [8,10), each scored from its second token.
        XCTAssertEqual(Perplexity.windows(count: 10, method: .windows(maxSeqLen: 4)).map { [$0.start, $0.end, $0.scoredFrom] },
                       [[0, 4, 1], [4, 8, 1], [8, 10, 1]])
        // Stride 2: [0,4) scores 1..., [2,6) scores from 2 (tokens 4, 5), ... every token 1..9 once.
        let plan = Perplexity.windows(count: 10, method: .strided(maxSeqLen: 4, stride: 2))
        XCTAssertEqual(plan.map { [$0.start, $0.end, $0.scoredFrom] }, [[0, 4, 1], [2, 6, 2], [4, 8, 2], [6, 10, 2]])
        var scored: [Int] = []
        for w in plan { scored += (w.start + w.scoredFrom)..<w.end }
        XCTAssertEqual(scored, Array(1..<10))
    }

    func testBadSettingsAreRefused() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        XCTAssertThrowsError(try Perplexity.evaluate(lm.model, tokens: [1, 2, 3], method: .windows(maxSeqLen: 1)))
        XCTAssertThrowsError(try Perplexity.evaluate(lm.model, tokens: [1, 2, 3], method: .strided(maxSeqLen: 4, stride: 5)))
        XCTAssertThrowsError(try Perplexity.evaluate(lm.model, tokens: [1], method: .windows(maxSeqLen: 4)))
    }

    /// T5: each target scored given its source equals transformers' `model(input_ids=source,
    /// labels=target).loss` per pair (Scripts/fixtures/make_tiny_t5.py), token-weighted; a
    /// dataset file of (input, output) pairs is scored as those pairs.
    func testEncoderDecoderPairsMatchTransformers() throws {
        struct Pair: Decodable { let source: [Int]; let target: [Int]; let loss: Double }
        struct Expected: Decodable { let pairs: [Pair] }
        for variant in ["v1_1", "original"] {
            let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/\(variant)/expected.json"))))
            let lm = try LoadedModel.load(Fixtures.path("tiny-t5/\(variant)/hf"))
            let r = try Perplexity.evaluate(lm.model, pairs: e.pairs.map { ($0.source, $0.target) }, batchSize: 2)
            let n = e.pairs.reduce(0) { $0 + $1.target.count }
            let want = e.pairs.reduce(0.0) { $0 + $1.loss * Double($1.target.count) }
            XCTAssertEqual(r.tokens, n)
            XCTAssertEqual(r.nllSum, want, accuracy: 1e-5 * want, variant)
            XCTAssertEqual(r.perplexity, Foundation.exp(want / Double(n)), accuracy: 1e-5 * r.perplexity, variant)

            let file = NSTemporaryDirectory() + "finch-t5-ppl-\(UInt32.random(in: 0...UInt32.max)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: file) }
            let records = [("question: where is the harbor?", "by the glass works"), ("summarize: lanterns light the town", "lanterns")]
            try records.map { #"{"input": "\#($0.0)", "output": "\#($0.1)"}"# }.joined(separator: "\n")
                .write(toFile: file, atomically: true, encoding: .utf8)
            let fromFile = try Perplexity.evaluate(lm, file: file, format: nil, method: .windows(maxSeqLen: 512))
            let eos = try XCTUnwrap(lm.tokenizer.eosTokenId)
            let direct = try Perplexity.evaluate(lm.model, pairs: records.map {
                (lm.tokenizer.encode($0.0, addSpecialTokens: true), lm.tokenizer.encode($0.1) + [eos])
            })
            XCTAssertEqual(fromFile.tokens, direct.tokens, variant)
            XCTAssertEqual(fromFile.nllSum, direct.nllSum, accuracy: 1e-9 * direct.nllSum, variant)
        }
    }
}
