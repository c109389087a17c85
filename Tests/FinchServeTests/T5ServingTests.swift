import FinchCore
import FinchFormats
@testable import FinchModels
import FinchQuant
@testable import FinchServe
import FinchTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// T5 is served like every decoder family, through the same engine and routes: its prompts are
/// the encoder's sources, batched sequences (with and without its PEFT adapter) give what each
/// gives alone, and `/v1/completions` answers with transformers' greedy `generate`.
final class T5ServingTests: XCTestCase, @unchecked Sendable {
    struct Pair: Decodable { let source: [Int]; let greedy32: [Int] }
    struct Expected: Decodable { let pairs: [Pair] }

    static func expected(_ variant: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/\(variant)/expected.json"))))
    }

    func testBatchedWithAdaptersEqualsAlone() throws {
        for quantization in [nil, QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true, computeDType: .f32)] {
            let lm = try LoadedModel.load(Fixtures.path("tiny-t5/v1_1/hf"), quantization: quantization)
            try lm.model.loadAdapter(directory: Fixtures.path("tiny-t5/v1_1/peft"), name: "peft")
            lm.model.setActiveAdapter(nil)
            let pairs = try Self.expected("v1_1").pairs
            let requests = (0..<6).map { i in
                GenerationRequest(promptTokens: pairs[i % pairs.count].source, adapter: i % 2 == 0 ? nil : "peft", maxTokens: 10,
                                  stopTokenIds: [], logprobs: 2)
            }
            let batched = ServeFixtures.run(requests, lm: lm).events
            for (i, r) in requests.enumerated() {
                XCTAssertEqual(batched[i].generatedTokens.count, 10)
                assertSameGreedy(batched[i], ServeFixtures.run([r], lm: lm).events[0], "t5 request \(i)")
            }
            // Without an adapter the greedy answer is transformers'.
            XCTAssertEqual(batched[0].generatedTokens, Array(pairs[0].greedy32.prefix(10)))
            let adapted = ServeFixtures.run([GenerationRequest(promptTokens: pairs[0].source, adapter: "peft", maxTokens: 1, logprobs: 2)],
                                            lm: lm).events[0]
            XCTAssertNotEqual(batched[0].tokenLogprobs[0].top[0].logprob, adapted.tokenLogprobs[0].top[0].logprob, "the adapter changes the answer")
        }
    }

    /// A request's adapter runs in the encoder (and the cross-attention keys and values made there) too: its first
    /// token's log-probabilities are the model's with that adapter active (before, the encoder ran without it).
    func testARequestsAdapterRunsInTheEncoder() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-t5/v1_1/hf"))
        try lm.model.loadAdapter(directory: Fixtures.path("tiny-t5/v1_1/peft"), name: "peft")
        let t5 = try XCTUnwrap(lm.model as? T5Model)
        for (i, p) in try Self.expected("v1_1").pairs.prefix(2).enumerated() {
            lm.model.setActiveAdapter("peft")
            let want = try t5.logits(source: p.source, decoderInput: [t5.config.startTokenId])[0]
            lm.model.setActiveAdapter(nil)
            let requests = [GenerationRequest(promptTokens: p.source, adapter: nil, maxTokens: 1, stopTokenIds: [], logprobs: 2),
                            GenerationRequest(promptTokens: p.source, adapter: "peft", maxTokens: 1, stopTokenIds: [], logprobs: 2)]
            let top = ServeFixtures.run(requests, lm: lm).events[1].tokenLogprobs[0].top[0]
            let m = want.max()!, lse = m + log(want.map { exp($0 - m) }.reduce(0, +))
            XCTAssertEqual(top.token, want.firstIndex(of: m)!, "pair \(i)")
            XCTAssertEqual(Double(top.logprob), Double(m - lse), accuracy: 2e-5, "pair \(i)")
        }
    }

    func testCompletionsRouteAnswersWithTransformersGreedy() async throws {
        for variant in ["v1_1", "original"] {
            let lm = try LoadedModel.load(Fixtures.path("tiny-t5/\(variant)/hf"))
            let engine = InferenceEngine(lm: lm, maxBatch: 4)
            defer { engine.shutdown() }
            let state = ServerState(model: ServedModel(engine: engine, name: "tiny-t5", contextLength: 512, adapters: [:]))
            var logger = Logger(label: "test")
            logger.logLevel = .error
            let app = try FinchServer.application(state: state, options: ServeOptions(), logger: logger)
            let pairs = try Self.expected(variant).pairs
            try await app.test(.router) { client in
                for (i, p) in pairs.enumerated() {
                    let ids = p.source.map(String.init).joined(separator: ", ")
                    let r = try await client.execute(uri: "/v1/completions", method: .post,
                                                     body: ByteBuffer(string: #"{"prompt": [\#(ids)], "max_tokens": 32, "temperature": 0}"#))
                    XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                    let body = try JSONParser.parse(Array(r.body.readableBytesView))
                    let choice = body["choices"]!.arrayValue![0]
                    XCTAssertEqual(choice["text"]?.stringValue, lm.tokenizer.decode(p.greedy32, skipSpecialTokens: true), "\(variant) pair \(i)")
                    XCTAssertEqual(choice["finish_reason"]?.stringValue, "length")
                    XCTAssertEqual(body["usage"]?["prompt_tokens"]?.wholeNumberValue, p.source.count)
                }
                // A text prompt is the source as transformers' tokenizer makes it (closing </s>).
                let text = "translate: the lantern harbor"
                let r = try await client.execute(uri: "/v1/completions", method: .post,
                                                 body: ByteBuffer(string: #"{"prompt": "\#(text)", "max_tokens": 8, "temperature": 0}"#))
                let want = try Generator(lm).generate(promptTokens: [lm.tokenizer.encode(text, addSpecialTokens: true)],
                                                      options: GenerationOptions(maxNewTokens: 8))[0].text
                XCTAssertEqual(try JSONParser.parse(Array(r.body.readableBytesView))["choices"]?.arrayValue?.first?["text"]?.stringValue, want)
                // Echoed prompt log-probabilities need a decoder-only model: refused by name.
                let echo = try await client.execute(uri: "/v1/completions", method: .post,
                                                    body: ByteBuffer(string: #"{"prompt": "hi", "max_tokens": 0, "echo": true, "logprobs": 1}"#))
                XCTAssertNotEqual(echo.status, .ok)
                XCTAssertTrue(String(buffer: echo.body).contains("decoder-only"), String(buffer: echo.body))
            }
        }
    }
}
