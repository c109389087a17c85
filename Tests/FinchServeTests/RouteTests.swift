import FinchFormats
import FinchModels
@testable import FinchServe
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import FinchTestSupport
import XCTest

/// Every route through Hummingbird's test client, on the real SmolLM2 with three adapters.
final class RouteTests: XCTestCase, @unchecked Sendable {
    var engines: [InferenceEngine] = []

    override func tearDown() {
        for e in engines { e.shutdown() }
        engines.removeAll()
    }

    func served(context: Int = 512) throws -> ServedModel {
        let lm = try ServeFixtures.model()
        let engine = InferenceEngine(lm: lm, maxBatch: 16)
        engines.append(engine)
        let paths = Dictionary(uniqueKeysWithValues: ServeFixtures.adapters.keys.map { ($0, ServeFixtures.adapterPath($0)) })
        return ServedModel(engine: engine, name: "smollm2-135m", contextLength: context, adapters: paths)
    }

    func app(_ state: ServerState, _ options: ServeOptions = ServeOptions()) throws -> some ApplicationProtocol {
        var logger = Logger(label: "test")
        logger.logLevel = .error
        return try FinchServer.application(state: state, options: options, logger: logger)
    }

    func ready(_ options: ServeOptions = ServeOptions(), context: Int = 512) throws -> some ApplicationProtocol {
        let state = ServerState(model: try served(context: context))
        if let m = try? state.model() { m.engine.observer = nil }
        return try app(state, options)
    }

    func json(_ r: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue {
        do { return try JSONParser.parse(Array(r.body.readableBytesView)) }
        catch { XCTFail("not JSON: \(String(buffer: r.body))", file: file, line: line); throw error }
    }

    /// The `data:` payloads of a server-sent event stream (the final `[DONE]` included as a string).
    func events(_ r: TestResponse) throws -> [JSONValue] {
        let text = String(buffer: r.body)
        XCTAssertTrue(text.hasSuffix("data: [DONE]\n\n"), text)
        return try text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { block in
            XCTAssertTrue(block.hasPrefix("data: "), block)
            let payload = String(block.dropFirst(6))
            return payload == "[DONE]" ? .string(payload) : try JSONParser.parse(payload)
        }
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    /// Asserts an OpenAI error object with this status (and code / param when given).
    func assertError(_ r: TestResponse, _ status: HTTPResponse.Status, code: String? = nil, param: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(r.status, status, String(buffer: r.body), file: file, line: line)
        let e = try XCTUnwrap(try json(r)["error"], file: file, line: line)
        XCTAssertFalse((e["message"]?.stringValue ?? "").isEmpty, file: file, line: line)
        XCTAssertNotNil(e["type"]?.stringValue, file: file, line: line)
        if let code { XCTAssertEqual(e["code"]?.stringValue, code, "\(e)", file: file, line: line) }
        if let param { XCTAssertEqual(e["param"]?.stringValue, param, "\(e)", file: file, line: line) }
    }

    // MARK: - Routes

    func testHealthSays503WhileLoadingThenOK() async throws {
        let state = ServerState()
        let model = try served()
        try await app(state).test(.router) { client in
            let h = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(h.status, .serviceUnavailable)
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "Hi"}"#), .serviceUnavailable, code: "model_loading")
            state.phase = .ready(model)
            let ok = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(ok.status, .ok)
            XCTAssertEqual(try json(ok)["status"]?.stringValue, "ok")
        }
    }

    func testModelsListsTheBaseAndEveryAdapter() async throws {
        try await ready().test(.router) { client in
            let r = try await client.execute(uri: "/v1/models", method: .get)
            XCTAssertEqual(r.status, .ok)
            let ids = try json(r)["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
            XCTAssertEqual(ids, ["smollm2-135m", "dora", "lora", "rslora"])
            let one = try await client.execute(uri: "/v1/models/lora", method: .get)
            XCTAssertEqual(try json(one)["parent"]?.stringValue, "smollm2-135m")
            try assertError(try await client.execute(uri: "/v1/models/nope", method: .get), .notFound, code: "model_not_found")
        }
    }

    func testChatCompletionAndItsStreamAgree() async throws {
        try await ready().test(.router) { client in
            let ask = #""messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}], "temperature": 0, "max_tokens": 16"#
            let r = try await post(client, "/v1/chat/completions", "{\(ask), \"logprobs\": true, \"top_logprobs\": 2}")
            XCTAssertEqual(r.status, .ok)
            let body = try json(r)
            XCTAssertEqual(body["object"]?.stringValue, "chat.completion")
            let choice = try XCTUnwrap(body["choices"]?.arrayValue?.first)
            let content = try XCTUnwrap(choice["message"]?["content"]?.stringValue)
            XCTAssertFalse(content.isEmpty)
            let lps = try XCTUnwrap(choice["logprobs"]?["content"]?.arrayValue)
            let usage = try XCTUnwrap(body["usage"])
            // Usage counts the end-of-sequence token; logprobs cover the content's tokens.
            let eos = choice["finish_reason"]?.stringValue == "stop" ? 1 : 0
            XCTAssertEqual(lps.count + eos, usage["completion_tokens"]?.intValue)
            XCTAssertEqual(lps[0]["top_logprobs"]?.arrayValue?.count, 2)
            XCTAssertEqual(lps.map { $0["token"]!.stringValue! }.joined(), content, "tokens spell the content")

            let s = try await post(client, "/v1/chat/completions", "{\(ask), \"stream\": true, \"stream_options\": {\"include_usage\": true}}")
            XCTAssertEqual(s.status, .ok)
            XCTAssertEqual(s.headers[.contentType], "text/event-stream")
            let chunks = try events(s)
            XCTAssertEqual(chunks.last, .string("[DONE]"))
            XCTAssertEqual(chunks[0]["choices"]?.arrayValue?[0]["delta"]?["role"]?.stringValue, "assistant")
            var streamed = ""
            var finish: String?
            for c in chunks.dropLast(2) {
                XCTAssertEqual(c["object"]?.stringValue, "chat.completion.chunk")
                let ch = c["choices"]!.arrayValue![0]
                streamed += ch["delta"]?["content"]?.stringValue ?? ""
                if let f = ch["finish_reason"]?.stringValue { finish = f }
            }
            XCTAssertEqual(streamed, content)
            XCTAssertEqual(finish, choice["finish_reason"]?.stringValue)
            let last = chunks[chunks.count - 2]
            XCTAssertEqual(last["choices"]?.arrayValue?.count, 0)
            XCTAssertEqual(last["usage"], usage)
        }
    }

    func testSeveralChoicesStreamInterleavedAndEachEnds() async throws {
        try await ready().test(.router) { client in
            let ask = #""messages": [{"role": "user", "content": "Write a short poem."}], "temperature": 0.9, "seed": 5, "max_tokens": 12, "n": 3"#
            let whole = try json(try await post(client, "/v1/chat/completions", "{\(ask)}"))
            let contents = whole["choices"]!.arrayValue!.map { $0["message"]!["content"]!.stringValue! }
            XCTAssertEqual(contents.count, 3)
            XCTAssertGreaterThan(Set(contents).count, 1, "seeds seed, seed+1, seed+2 sample differently")
            let chunks = try events(try await post(client, "/v1/chat/completions", "{\(ask), \"stream\": true}"))
            var texts = ["", "", ""], finishes = [String?](repeating: nil, count: 3)
            for c in chunks.dropLast() {
                let ch = c["choices"]!.arrayValue![0]
                let i = ch["index"]!.intValue!
                texts[i] += ch["delta"]?["content"]?.stringValue ?? ""
                if let f = ch["finish_reason"]?.stringValue { finishes[i] = f }
            }
            XCTAssertEqual(texts, contents, "the same seeds give the same samples, streamed or whole")
            XCTAssertTrue(finishes.allSatisfy { $0 != nil })
        }
    }

    func testAdapterIsChosenByModelOrAdapterField() async throws {
        try await ready().test(.router) { client in
            func firstLogprob(_ fields: String) async throws -> String {
                let r = try await post(client, "/v1/chat/completions",
                                       #"{"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0, "max_tokens": 3, "logprobs": true, "#
                                       + fields + "}")
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                let body = try json(r)
                return body["choices"]!.arrayValue![0]["logprobs"]!["content"]!.arrayValue![0]["logprob"]!.serialized()
                    + "@" + (body["model"]?.stringValue ?? "")
            }
            let base = try await firstLogprob(#""model": "base""#)
            let baseByName = try await firstLogprob(#""model": "smollm2-135m""#)
            let lora = try await firstLogprob(#""model": "lora""#)
            let loraField = try await firstLogprob(#""model": "smollm2-135m", "adapter": "lora""#)
            XCTAssertEqual(base, baseByName)
            XCTAssertEqual(lora, loraField)
            XCTAssertTrue(lora.hasSuffix("@lora"))
            XCTAssertNotEqual(base.split(separator: "@")[0], lora.split(separator: "@")[0])
        }
    }

    func testCompletionEchoScoresThePromptAsLMEvalAsks() async throws {
        let lm = try ServeFixtures.model()
        let prompt = lm.tokenizer.encode("The capital of France is Paris")
        let ids = prompt.map(String.init).joined(separator: ", ")
        try await ready().test(.router) { client in
            // lm-eval's local-completions loglikelihood request: echo, logprobs 1, one new token.
            for maxTokens in [0, 1] {
                let r = try await post(client, "/v1/completions",
                                       #"{"model": "smollm2-135m", "prompt": [[\#(ids)]], "echo": true, "logprobs": 1, "temperature": 0, "max_tokens": \#(maxTokens), "seed": 1234}"#)
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                let choice = try json(r)["choices"]!.arrayValue![0]
                let lp = try XCTUnwrap(choice["logprobs"])
                let values = lp["token_logprobs"]!.arrayValue!
                XCTAssertEqual(values.count, prompt.count + maxTokens)
                XCTAssertEqual(values[0], .null)
                XCTAssertTrue(values.dropFirst().allSatisfy { ($0.doubleValue ?? 1) <= 0 })
                XCTAssertEqual(lp["top_logprobs"]!.arrayValue!.count, prompt.count + maxTokens)
                XCTAssertEqual(lp["tokens"]!.arrayValue!.prefix(prompt.count).map { $0.stringValue! }.joined(),
                               lm.tokenizer.decode(prompt))
                XCTAssertTrue(choice["text"]!.stringValue!.hasPrefix("The capital of France is Paris"))
            }
            // lm-eval drops the last entry as the generated one, also when that token ended the
            // answer (end of sequence, as after several of these MMLU answers).
            let items = try String(contentsOfFile: Fixtures.path("mmlu/mmlu_zero_shot_val_100.jsonl"), encoding: .utf8)
                .split(separator: "\n").prefix(3)
            var ended = 0
            for item in items {
                let input = try JSONParser.parse(String(item))["input"]!.stringValue!
                for letter in ["A", "B", "C", "D"] {
                    let p = lm.tokenizer.encode(input + " " + letter)
                    let r = try await post(client, "/v1/completions", #"{"prompt": [\#(p.map(String.init).joined(separator: ","))], "echo": true, "logprobs": 1, "temperature": 0, "max_tokens": 1}"#)
                    let choice = try json(r)["choices"]!.arrayValue![0]
                    XCTAssertEqual(choice["logprobs"]!["token_logprobs"]!.arrayValue!.count, p.count + 1)
                    if choice["finish_reason"]?.stringValue == "stop" { ended += 1 }
                }
            }
            XCTAssertGreaterThan(ended, 0, "some answers end with the end-of-sequence token")
        }
    }

    func testCompletionPromptForms() async throws {
        try await ready().test(.router) { client in
            for (prompt, count) in [(#""Once upon a time""#, 1), (#"["Once", "Twice"]"#, 2), ("[504, 3575, 282]", 1),
                                    ("[[504, 3575], [504]]", 2)] {
                let r = try await post(client, "/v1/completions", #"{"prompt": \#(prompt), "max_tokens": 3, "temperature": 0, "n": 2}"#)
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                let choices = try json(r)["choices"]!.arrayValue!
                XCTAssertEqual(choices.map { $0["index"]!.intValue! }, Array(0..<(2 * count)), prompt)
                // Greedy: both samples of a prompt agree.
                for p in 0..<count { XCTAssertEqual(choices[2 * p]["text"], choices[2 * p + 1]["text"]) }
            }
            let s = try await post(client, "/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "stream": true}"#)
            let chunks = try events(s)
            let text = chunks.dropLast().compactMap { $0["choices"]?.arrayValue?.first?["text"]?.stringValue }.joined()
            let plain = try await post(client, "/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}"#)
            XCTAssertEqual(text, try json(plain)["choices"]!.arrayValue![0]["text"]!.stringValue!)
        }
    }

    func testErrorsAreOpenAIErrorObjects() async throws {
        var options = ServeOptions()
        options.maxBodyBytes = 4000
        options.maxTokens = 100
        let long = String(repeating: "word ", count: 600)
        try await ready(options).test(.router) { client in
            let chat = #"{"messages": [{"role": "user", "content": "Hi"}], "#
            let cases: [(String, String, HTTPResponse.Status, String?, String?)] = [
                ("/v1/chat/completions", "{bad json", .badRequest, "invalid_json", nil),
                ("/v1/chat/completions", "[1, 2]", .badRequest, nil, nil),
                ("/v1/chat/completions", chat + #""model": "nope"}"#, .notFound, "model_not_found", "model"),
                ("/v1/chat/completions", chat + #""temperature": "hot"}"#, .badRequest, "invalid_value", "temperature"),
                ("/v1/chat/completions", chat + #""temperature": 7}"#, .badRequest, "invalid_value", "temperature"),
                ("/v1/chat/completions", chat + #""n": 0}"#, .badRequest, "invalid_value", "n"),
                ("/v1/chat/completions", chat + #""stop": 5}"#, .badRequest, "invalid_value", "stop"),
                ("/v1/chat/completions", chat + #""top_logprobs": 2}"#, .badRequest, "invalid_value", "top_logprobs"),
                ("/v1/chat/completions", chat + #""presence_penalty": 1.5}"#, .badRequest, "invalid_value", "presence_penalty"),
                ("/v1/chat/completions", chat + #""max_tokens": 101}"#, .badRequest, "invalid_value", "max_tokens"),
                ("/v1/chat/completions", #"{"messages": []}"#, .badRequest, "invalid_value", "messages"),
                ("/v1/chat/completions", #"{"messages": [{"content": "no role"}]}"#, .badRequest, "invalid_value", "messages[0].role"),
                ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "\#(long)"}]}"#, .badRequest,
                 "context_length_exceeded", nil),
                ("/v1/completions", #"{"prompt": [1, -4]}"#, .badRequest, "invalid_value", "prompt"),
                ("/v1/completions", #"{"prompt": {"a": 1}}"#, .badRequest, "invalid_value", "prompt"),
                ("/v1/completions", #"{"max_tokens": 3}"#, .badRequest, "invalid_value", "prompt"),
                ("/v1/completions", #"{"prompt": "x", "suffix": "y"}"#, .badRequest, "invalid_value", "suffix"),
                ("/v1/completions", #"{"prompt": "x", "logprobs": 50}"#, .badRequest, "invalid_value", "logprobs"),
                ("/v1/completions", #"{"prompt": "\#(String(repeating: "x", count: 5000))"}"#, .contentTooLarge, "body_too_large", nil),
                ("/v1/adapters", #"{"name": "lora", "path": "/tmp"}"#, .conflict, "adapter_exists", "name"),
                ("/v1/adapters", #"{"name": "new", "path": "/nonexistent/adapter"}"#, .badRequest, "adapter_load_failed", "path"),
                ("/tokenize", #"{"nothing": 1}"#, .badRequest, "invalid_value", "prompt"),
                ("/detokenize", #"{"tokens": [1, "a"]}"#, .badRequest, "invalid_value", "tokens"),
            ]
            for (uri, body, status, code, param) in cases {
                let r = try await post(client, uri, body)
                try assertError(r, status, code: code, param: param)
            }
            try assertError(try await client.execute(uri: "/v1/nothing", method: .get), .notFound)
            try assertError(try await client.execute(uri: "/v1/completions", method: .get), .notFound)
        }
    }

    func testAPIKeyIsRequiredWhenSet() async throws {
        var options = ServeOptions()
        options.apiKey = "sekret"
        try await ready(options).test(.router) { client in
            try assertError(try await client.execute(uri: "/v1/models", method: .get), .unauthorized, code: "invalid_api_key")
            try assertError(try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer wrong"]),
                            .unauthorized, code: "invalid_api_key")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x"}"#), .unauthorized)
            let ok = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sekret"])
            XCTAssertEqual(ok.status, .ok)
            let health = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(health.status, .ok)
            let page = try await client.execute(uri: "/", method: .get)
            XCTAssertEqual(page.status, .ok)
            let evalPage = try await client.execute(uri: "/eval", method: .get)
            XCTAssertEqual(evalPage.status, .ok)
            try assertError(try await client.execute(uri: "/eval/elo", method: .get), .unauthorized, code: "invalid_api_key")
            // An unknown path is behind the key too: it tells nothing about the routes to a caller without it.
            try assertError(try await client.execute(uri: "/nowhere", method: .get), .unauthorized, code: "invalid_api_key")
        }
    }

    /// The `route` label is the router's pattern: a path with a parameter counts under its pattern, and a
    /// path no route matched under `other`, so the label set stays bounded whatever clients send.
    func testMetricsRouteLabelsComeFromTheRouter() async throws {
        try await ready().test(.router) { client in
            _ = try await client.execute(uri: "/v1/models/nonesuch", method: .get)
            _ = try await client.execute(uri: "/nowhere/\(UUID().uuidString)", method: .get)
            _ = try await client.execute(uri: "/health", method: .get)
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            XCTAssertTrue(text.contains(#"finch_requests_total{route="/v1/models/{id}",status="404"} 1"#), text)
            XCTAssertTrue(text.contains(#"finch_requests_total{route="other",status="404"} 1"#), text)
            XCTAssertTrue(text.contains(#"finch_requests_total{route="/health",status="200"} 1"#), text)
        }
    }

    func testAdapterLoadedAtRunTimeServes() async throws {
        try await ready().test(.router) { client in
            let r = try await post(client, "/v1/adapters", #"{"name": "late", "path": "\#(ServeFixtures.adapterPath("rslora"))"}"#)
            XCTAssertEqual(r.status, .created, String(buffer: r.body))
            let ids = try json(try await client.execute(uri: "/v1/models", method: .get))["data"]!.arrayValue!.map { $0["id"]!.stringValue! }
            XCTAssertTrue(ids.contains("late"))
            func answer(_ model: String) async throws -> JSONValue {
                let r = try await post(client, "/v1/completions", #"{"model": "\#(model)", "prompt": "Hello", "max_tokens": 4, "temperature": 0, "logprobs": 0}"#)
                XCTAssertEqual(r.status, .ok)
                return try json(r)["choices"]!.arrayValue![0]["logprobs"]!
            }
            let late = try await answer("late"), rs = try await answer("rslora")
            XCTAssertEqual(late, rs, "the same adapter under two names answers the same")
        }
    }

    func testTokenizeAndDetokenize() async throws {
        try await ready().test(.router) { client in
            let t = try json(try await post(client, "/tokenize", #"{"prompt": "Hello world"}"#))
            let ids = t["tokens"]!.arrayValue!
            XCTAssertEqual(t["count"]?.intValue, ids.count)
            let d = try json(try await post(client, "/detokenize", #"{"tokens": \#(JSONValue.array(ids).serialized())}"#))
            XCTAssertEqual(d["prompt"]?.stringValue, "Hello world")
            let chat = try json(try await post(client, "/tokenize", #"{"messages": [{"role": "user", "content": "Hi"}]}"#))
            XCTAssertGreaterThan(chat["count"]!.intValue!, 3)
        }
    }

    func testMetricsCountRequestsAndTokens() async throws {
        let served = try served()
        let metrics = ServerMetrics()
        served.engine.observer = metrics
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let app = try FinchServer.application(state: ServerState(model: served), options: ServeOptions(), metrics: metrics, logger: logger)
        try await app.test(.router) { client in
            _ = try await post(client, "/v1/completions", #"{"prompt": "Hello", "max_tokens": 5, "temperature": 0}"#)
            _ = try await post(client, "/v1/completions", #"{"prompt": 5}"#)
            // The engine reports a step after its events went out: wait for the last step's report.
            var text = ""
            for _ in 0..<100 {
                text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                if text.contains("finch_generation_tokens_total 5") { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            XCTAssertTrue(text.contains(#"finch_requests_total{route="/v1/completions",status="200"} 1"#), text)
            XCTAssertTrue(text.contains(#"finch_requests_total{route="/v1/completions",status="400"} 1"#), text)
            XCTAssertTrue(text.contains("finch_generation_tokens_total 5"), text)
            XCTAssertTrue(text.contains("finch_time_to_first_token_seconds_count 1"), text)
            XCTAssertTrue(text.contains("finch_prompt_tokens_total"), text)
        }
    }

    /// 8 concurrent HTTP requests (mixed adapters, the base among them) answer as one at a time.
    func testConcurrentRequestsAnswerAsOneAtATime() async throws {
        let models = ["base", "lora", "dora", "rslora", "smollm2-135m", "lora", "dora", "rslora"]
        let questions = ["Name a fruit.", "What is 2 + 2?"]
        @Sendable func body(_ i: Int) -> String {
            #"{"model": "\#(models[i])", "messages": [{"role": "user", "content": "\#(questions[i % 2])"}], "temperature": 0, "max_tokens": 20}"#
        }
        try await ready().test(.router) { client in
            var alone: [String] = []
            for i in 0..<8 {
                alone.append(try json(try await post(client, "/v1/chat/completions", body(i)))["choices"]!.arrayValue![0]["message"]!["content"]!.stringValue!)
            }
            let together = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<8 {
                    group.addTask {
                        let r = try await self.post(client, "/v1/chat/completions", body(i))
                        return (i, try self.json(r)["choices"]!.arrayValue![0]["message"]!["content"]!.stringValue!)
                    }
                }
                var out = [String](repeating: "", count: 8)
                for try await (i, t) in group { out[i] = t }
                return out
            }
            XCTAssertEqual(together, alone)
        }
    }

    func testConversationLogIsOptIn() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("finch-log-\(UUID()).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var options = ServeOptions()
        options.conversationLog = path
        let ask = #"{"model": "lora", "messages": [{"role": "user", "content": "Say yes."}], "temperature": 0, "max_tokens": 4"#
        try await ready(options).test(.router) { client in
            let info = try json(try await client.execute(uri: "/finch/info", method: .get))
            XCTAssertEqual(info["conversation_log"], .bool(true))
            XCTAssertEqual(info["adapters"]?.arrayValue?.count, 3)
            _ = try await post(client, "/v1/chat/completions", ask + "}")                          // not asked: not logged
            let r = try await post(client, "/v1/chat/completions", ask + #", "finch_log": true}"#)
            let answer = try json(r)["choices"]!.arrayValue![0]["message"]!["content"]!.stringValue!
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, 1)
            let entry = try JSONParser.parse(String(lines[0]))
            XCTAssertEqual(entry["model"]?.stringValue, "lora")
            XCTAssertEqual(entry["answers"], .array([.string(answer)]))
            XCTAssertEqual(entry["messages"]?.arrayValue?.first?["content"]?.stringValue, "Say yes.")
        }
        try await ready().test(.router) { client in
            try assertError(try await post(client, "/v1/chat/completions", ask + #", "finch_log": true}"#), .badRequest, param: "finch_log")
            let info = try await client.execute(uri: "/finch/info", method: .get)
            XCTAssertEqual(try json(info)["conversation_log"], .bool(false))
        }
    }

    func testPageIsServed() async throws {
        try await ready().test(.router) { client in
            let r = try await client.execute(uri: "/", method: .get)
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "text/html; charset=utf-8")
            XCTAssertTrue(String(buffer: r.body).contains("<title>Finch"))
        }
    }
}
