import FinchCore
import FinchModels
import FinchQuant
@testable import FinchServe
import FinchTestSupport
import XCTest

/// Every family the model seam loads serves batched, with and without its PEFT adapter, in f32,
/// bf16 and NF4: concurrent greedy sequences give what each gives alone (tiny random-weight
/// checkpoints of Tests/Fixtures written by transformers).
final class FamilyServingTests: XCTestCase {
    static let families = ["mistral", "qwen2", "qwen3", "gemma3", "gpt2"]

    func check(_ family: String, dtype: WeightDType, quantization: QuantizationConfig?) throws {
        let dir = Fixtures.path("tiny-\(family)")
        let lm = try LoadedModel.load(dir + "/hf", dtype: dtype, quantization: quantization)
        try lm.model.loadAdapter(directory: dir + "/peft", name: "peft")
        lm.model.setActiveAdapter(nil)
        var rng = SplitMix64(seed: 7)
        let vocab = lm.model.vocabSize
        let requests = (0..<6).map { i in
            GenerationRequest(promptTokens: (0..<(3 + 2 * i)).map { _ in Int(rng.next() % UInt64(vocab)) },
                              adapter: i % 2 == 0 ? nil : "peft", maxTokens: 10, stopTokenIds: [], logprobs: 2)
        }
        let batched = ServeFixtures.run(requests, lm: lm).events
        for (i, r) in requests.enumerated() {
            let alone = ServeFixtures.run([r], lm: lm).events[0]
            XCTAssertEqual(batched[i].generatedTokens.count, 10)
            assertSameGreedy(batched[i], alone, "\(family) \(dtype) \(quantization == nil ? "" : "nf4") request \(i)")
        }
        // The adapter changes what the model says.
        let base = batched[0].tokenLogprobs[0].top, other = ServeFixtures.run(
            [GenerationRequest(promptTokens: requests[0].promptTokens, adapter: "peft", maxTokens: 1, logprobs: 2)], lm: lm)
            .events[0].tokenLogprobs[0].top
        XCTAssertNotEqual(base[0].logprob, other[0].logprob, family)
    }

    func testEveryFamilyServesF32() throws {
        for f in Self.families { try check(f, dtype: .f32, quantization: nil) }
    }

    func testEveryFamilyServesBF16() throws {
        for f in Self.families { try check(f, dtype: .bf16, quantization: nil) }
    }

    func testEveryFamilyServesNF4() throws {
        for f in Self.families {
            try check(f, dtype: .f32, quantization: QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true, computeDType: .f32))
        }
    }
}
