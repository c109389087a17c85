import FinchEval
import FinchFormats
import FinchModels
import FinchNet
@testable import FinchServe
import FinchTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import XCTest

/// What a fake OpenAI-compatible server saw, and what it answers next.
final class FakeChatAPI: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [(body: JSONValue, authorization: String?)] = []
    /// Statuses to answer before succeeding (popped one a request); then 200 with `reply`.
    var failures: [Int] = []
    var reply = "Assistant 2 answers the question; Assistant 1 does not.\n2"

    var requests: [(body: JSONValue, authorization: String?)] { lock.withLock { seen } }

    func answer(_ body: JSONValue, _ authorization: String?) -> (Int, String) {
        lock.withLock {
            seen.append((body, authorization))
            if !failures.isEmpty {
                let s = failures.removeFirst()
                return (s, #"{"error": {"message": "fake failure \#(s)", "type": "test"}}"#)
            }
            let content = JSONValue.string(reply).serialized()
            return (200, #"{"id": "chatcmpl-1", "object": "chat.completion", "model": "fake", "choices": [{"index": 0, "message": {"role": "assistant", "content": \#(content)}, "finish_reason": "stop"}]}"#)
        }
    }

    func application() -> some ApplicationProtocol {
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            let body = try JSONParser.parse(String(buffer: buffer))
            let (status, text) = self.answer(body, request.headers[.authorization])
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            if status == 429 { headers[.retryAfter] = "0" }
            return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        var logger = Logger(label: "fake-openai")
        logger.logLevel = .error
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
    }
}

/// The judge over an OpenAI-compatible API: against a fake server (retries, errors, the cache, the
/// request it sends) and against `finch serve` itself (the same replies as the local judge).
final class APIJudgeTests: XCTestCase {
    static let cases = [JudgeCase(question: "What is 2 + 2?", answer1: "5", answer2: "4"),
                 JudgeCase(question: "Name a colour.", category: "generic", answer1: "Blue.", answer2: "Seven.")]

    func tempPath() -> String {
        let p = NSTemporaryDirectory() + "finch-judge-cache-\(UUID().uuidString).jsonl"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    static func chat(_ port: Int, key: String? = "sk-test") -> OpenAIChat {
        var c = OpenAIChat(baseURL: "http://127.0.0.1:\(port)/v1", model: "gpt-4o", apiKey: key)
        c.policy = RetryPolicy(attempts: 4, baseDelay: 0.01, maxDelay: 0.05)
        c.maxTokens = 300
        return c
    }

    func testRetries429ThenCachesSoARerunAsksNothing() async throws {
        let api = FakeChatAPI()
        api.failures = [429, 429]
        let cachePath = tempPath()
        try await api.application().test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let judge = APIJudge(chat: Self.chat(port), mode: .explain, cache: try JudgeCache(path: cachePath))
            judge.concurrency = 1
            let retries = RetryLog()
            judge.onRetry = { reason, _ in retries.add(reason) }
            let out = try await judge.judgeAsync(Self.cases)
            XCTAssertEqual(out.map(\.verdict), [.second, .second])
            XCTAssertEqual(retries.all, ["HTTP 429", "HTTP 429"])
            XCTAssertEqual(api.requests.count, 4, "two 429s, then one request per case")
            XCTAssertEqual(judge.asked, 2)
            // What was sent: the model, temperature 0, the key, qlora's layout in explain mode.
            let body = try XCTUnwrap(api.requests.last?.body)
            XCTAssertEqual(body["model"]?.stringValue, "gpt-4o")
            XCTAssertEqual(body["temperature"]?.doubleValue, 0)
            XCTAssertEqual(body["max_tokens"]?.wholeNumberValue, 300)
            let messages = try XCTUnwrap(body["messages"]?.arrayValue)
            XCTAssertEqual(messages.map { $0["role"]?.stringValue }, ["system", "user"])
            XCTAssertEqual(messages[1]["content"]?.stringValue, JudgePrompt.user(Self.cases[1], explain: true))
            XCTAssertEqual(api.requests.last?.authorization, "Bearer sk-test")

            // A second run (a new judge, the cache read from its file) sends nothing.
            let again = APIJudge(chat: Self.chat(port), mode: .explain, cache: try JudgeCache(path: cachePath))
            let out2 = try await again.judgeAsync(Self.cases)
            XCTAssertEqual(out2, out)
            XCTAssertEqual(api.requests.count, 4)
            XCTAssertEqual([again.asked, again.fromCache], [0, 2])
            // Choice mode is another request: not answered from explain mode's cache.
            let choice = APIJudge(chat: Self.chat(port), mode: .choice, cache: try JudgeCache(path: cachePath))
            _ = try await choice.judgeAsync([Self.cases[0]])
            XCTAssertEqual(api.requests.count, 5)
            XCTAssertEqual(api.requests.last?.body["messages"]?.arrayValue?[1]["content"]?.stringValue, JudgePrompt.user(Self.cases[0], explain: false))
        }
    }

    func testErrorsSayWhatToDo() async throws {
        let api = FakeChatAPI()
        try await api.application().test(.live) { client in
            let port = try XCTUnwrap(client.port)
            for (failures, status, says) in [([401], 401, "OPENAI_API_KEY"), ([404], 404, "--judge-url"),
                                             ([503, 503, 503, 503], 503, "after 4 tries"), ([400], 400, "--judge-model")] {
                api.failures = failures
                let before = api.requests.count
                do {
                    _ = try await APIJudge(chat: Self.chat(port, key: nil), mode: .explain).judgeAsync([Self.cases[0]])
                    XCTFail("HTTP \(status) should fail")
                } catch let e as NetError {
                    XCTAssertEqual(e.status, status)
                    XCTAssertTrue(e.description.contains(says) && e.description.contains("fake failure \(status)"), e.description)
                    XCTAssertTrue(e.description.contains("127.0.0.1:\(port)/v1/chat/completions"), e.description)
                }
                XCTAssertEqual(api.requests.count - before, failures.count, "only 429 and 5xx are retried")
                XCTAssertNil(api.requests.last?.authorization, "no key, no Authorization header")
            }
            api.failures = []
        }
        // Nobody listening: a clear error after the tries.
        var c = Self.chat(1)
        c.policy = RetryPolicy(attempts: 2, baseDelay: 0.01, maxDelay: 0.01)
        do {
            _ = try await APIJudge(chat: c, mode: .explain).judgeAsync([Self.cases[0]])
            XCTFail("no server should fail")
        } catch let e as NetError {
            XCTAssertNil(e.status)
            XCTAssertTrue(e.description.contains("no answer after 2 tries"), e.description)
        }
    }

    /// `finch serve` as the API: in explain mode its replies, and so the verdicts, are the local judge's
    /// (the same model, prompt and chat template, greedy).
    func testFinchServeJudgesAsTheLocalJudge() async throws {
        let lm = try ServeFixtures.model()
        lm.model.setActiveAdapter(nil)
        let questions = [JudgeCase(question: "What is the capital of France?", answer1: "Paris is the capital of France.", answer2: "Berlin."),
                         JudgeCase(question: "What is the capital of France?", answer1: "Berlin.", answer2: "Paris is the capital of France."),
                         JudgeCase(question: "Write a haiku about rain.", category: "writing", answer1: "Rain falls soft and slow / on the roofs of sleeping towns / puddles hold the sky.", answer2: "Rain is wet.")]
        let local = ModelJudge(lm, mode: .explain)
        local.maxNewTokens = 48
        local.batchSize = 1
        let expected = try local.judge(questions)

        let engine = InferenceEngine(lm: lm, maxBatch: 4)
        defer { engine.shutdown() }
        let served = ServedModel(engine: engine, name: "smollm2-135m", contextLength: 8192, adapters: [:])
        var options = ServeOptions()
        options.port = 0
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let app = try FinchServer.application(state: ServerState(model: served), options: options, logger: logger)
        try await app.test(.live) { client in
            var c = OpenAIChat(baseURL: "http://127.0.0.1:\(try XCTUnwrap(client.port))/v1", model: "smollm2-135m", apiKey: nil)
            c.maxTokens = 48
            let judge = APIJudge(chat: c, mode: .explain)
            judge.concurrency = 1
            let got = try await judge.judgeAsync(questions)
            XCTAssertEqual(got.map(\.text), expected.map(\.text))
            XCTAssertEqual(got.map(\.verdict), expected.map(\.verdict))
        }
        print("served judge: \(expected.map { $0.verdict.map { String($0.rawValue) } ?? "unreadable" })")
    }
}

final class RetryLog: @unchecked Sendable {
    private let lock = NSLock()
    private var reasons: [String] = []
    func add(_ r: String) { lock.withLock { reasons.append(r) } }
    var all: [String] { lock.withLock { reasons } }
}
