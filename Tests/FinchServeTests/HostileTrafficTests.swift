#if canImport(Glibc)
import Glibc
#endif
import FinchFormats
import FinchModels
@testable import FinchServe
import FinchTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// What hostile traffic on loopback found the server saying that was not so (issue 28): a gauge
/// of running requests that stayed up after clients hung up, a 500 for a body the client broke,
/// a message role nobody has rendered into the prompt. On the tiny Qwen2 fixture (ChatML template).
final class HostileTrafficTests: XCTestCase, @unchecked Sendable {
    var engines: [InferenceEngine] = []

    override func tearDown() {
        for e in engines { e.shutdown() }
        engines.removeAll()
    }

    static let tiny = Fixtures.path("tiny-qwen2/hf")

    /// A server over the tiny model. Its context is far longer than the model's 256 learned positions
    /// (RoPE runs past them): a generation that runs until it is cancelled.
    func server(_ options: ServeOptions = ServeOptions(), metrics: ServerMetrics = ServerMetrics(),
                context: Int = 256) throws -> (app: some ApplicationProtocol, engine: InferenceEngine) {
        let lm = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        let engine = InferenceEngine(lm: lm, maxBatch: 4)
        engines.append(engine)
        engine.observer = metrics
        let served = ServedModel(engine: engine, name: "tiny-qwen2", contextLength: context, adapters: [:])
        var logger = Logger(label: "test")
        logger.logLevel = .error
        return (try FinchServer.application(state: ServerState(model: served), options: options, metrics: metrics, logger: logger),
                engine)
    }

    func json(_ r: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue {
        do { return try JSONParser.parse(Array(r.body.readableBytesView)) }
        catch { XCTFail("not JSON: \(String(buffer: r.body))", file: file, line: line); throw error }
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ body: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, body: ByteBuffer(string: body))
    }

    /// A gauge's value in Prometheus' text.
    static func gauge(_ name: String, in text: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.dropFirst(name.count + 1)) }
    }

    /// Polls `/metrics` until `name` reads `value` (at most `seconds`); returns the last text.
    func waitForGauge(_ name: String, _ value: Double, client: some TestClientProtocol, seconds: Double = 30) async throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = ""
        repeat {
            text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            if Self.gauge(name, in: text) == value { break }
            try await Task.sleep(for: .milliseconds(50))
        } while Date() < deadline
        return text
    }

    // MARK: - 1. The running gauge comes down however a request ends

    func testRunningGaugeFallsWhenAStreamingClientHangsUp() async throws {
        var options = ServeOptions()
        options.port = 0
        options.maxTokens = 1 << 20
        let (app, engine) = try server(options, context: 1 << 21)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let body = #"{"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 1000000, "#
                + #""ignore_eos": true, "temperature": 0, "stream": true}"#
            let socket = try RawConnection(port: port)
            XCTAssertTrue(socket.send("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                      + "Content-Length: \(body.utf8.count)\r\n\r\n" + body))
            // A few tokens have streamed: the generation runs (a million tokens would take hours).
            let received = await socket.read(until: { $0.components(separatedBy: "data: ").count > 5 })
            XCTAssertTrue(received.hasPrefix("HTTP/1.1 200"), received)
            let running = try await waitForGauge("finch_requests_running", 1, client: client)
            XCTAssertEqual(Self.gauge("finch_requests_running", in: running), 1, running)
            socket.close()
            // The server notices at its next write; the sequence leaves the batch; the gauge follows.
            let after = try await waitForGauge("finch_requests_running", 0, client: client)
            XCTAssertEqual(Self.gauge("finch_requests_running", in: after), 0, "the gauge came down:\n\(after)")
            XCTAssertEqual(Self.gauge("finch_requests_waiting", in: after), 0, after)
            XCTAssertEqual(engine.load.running, 0, "the generation stopped")
        }
    }

    /// Events a handler stops reading without a word (it threw, or its response was never
    /// written) end their sequences too, instead of generating to `max_tokens` for no one, and the
    /// gauge follows.
    func testEventsLeftUnreadEndTheirSequences() async throws {
        let lm = try LoadedModel.load(try Fixtures.required("tiny-qwen2/hf"))
        let engine = InferenceEngine(lm: lm, maxBatch: 4)
        engines.append(engine)
        let metrics = ServerMetrics()
        engine.observer = metrics
        let served = ServedModel(engine: engine, name: "tiny-qwen2", contextLength: 1 << 21, adapters: [:])
        let request = GenerationRequest(promptTokens: lm.tokenizer.encode("Once upon a time"), maxTokens: 1_000_000,
                                        stopTokenIds: [])
        func running() -> Double? { Self.gauge("finch_requests_running", in: metrics.text()) }
        do {
            var events = try runChoices([request, request], on: served, metrics: metrics, arrival: 0).makeAsyncIterator()
            _ = await events.next()   // generating
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, running() != 2 { try await Task.sleep(for: .milliseconds(20)) }
            XCTAssertEqual(running(), 2)
            withExtendedLifetime(events) {}
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, engine.load != (0, 0) || running() != 0 { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(engine.load == (0, 0), "the sequences are still there: \(engine.load)")
        XCTAssertEqual(running(), 0, metrics.text())
    }

    // MARK: - 2. A body the server cannot read is the client's fault

    func testBrokenChunkedBodyIs400WithAnErrorObject() async throws {
        var options = ServeOptions()
        options.port = 0
        let (app, _) = try server(options)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let json = #"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}"#
            let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n"
            let broken = [
                "a chunk size that is not hexadecimal": "zz\r\n" + json + "\r\n0\r\n\r\n",
                "a chunk longer than its size": "4\r\n" + json + "\r\n0\r\n\r\n",
                "a negative chunk size": "-5\r\nhello\r\n0\r\n\r\n",
            ]
            for (what, body) in broken.sorted(by: { $0.key < $1.key }) {
                let socket = try RawConnection(port: port)
                XCTAssertTrue(socket.send(head + body), what)
                let response = await socket.read(until: RawConnection.isWholeResponse)
                socket.close()
                try assertErrorResponse(response, status: 400, code: "invalid_body", what)
            }
            // The server still answers.
            let r = try await post(client, "/v1/chat/completions", json)
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
        }
    }

    func testTruncatedAndOversizedBodiesAre4xx() async throws {
        var options = ServeOptions()
        options.port = 0
        options.maxBodyBytes = 1000
        let (app, _) = try server(options)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            // Chunked, larger than --max-body-bytes.
            let big = #"{"prompt": ""# + String(repeating: "x", count: 2000) + #""}"#
            let socket = try RawConnection(port: port)
            XCTAssertTrue(socket.send(head + "Transfer-Encoding: chunked\r\n\r\n" + String(big.utf8.count, radix: 16) + "\r\n"
                                      + big + "\r\n0\r\n\r\n"))
            // (The connection stays open: the body was whole, only too large.)
            try assertErrorResponse(await socket.read(until: RawConnection.isWholeResponse), status: 413, code: "body_too_large",
                                    "a chunked body over the limit")
            socket.close()
            // Shorter than its Content-Length, then the client stops sending: a 4xx if anything
            // (the server may also just close a connection that ended inside a request), never a 5xx.
            let short = try RawConnection(port: port)
            XCTAssertTrue(short.send(head + "Content-Length: 200\r\n\r\n" + #"{"prompt": "#))
            short.shutdownWrite()
            let response = await short.read(until: RawConnection.isWholeResponse)
            short.close()
            if !response.isEmpty { try assertErrorResponse(response, status: 400, code: nil, "a truncated body") }
            let r = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 2}"#)
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
        }
    }

    /// A raw HTTP/1.1 response: this status, an OpenAI error object (`invalid_request_error`) as its body.
    func assertErrorResponse(_ response: String, status: Int, code: String?, _ what: String,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 \(status) "), "\(what): \(response)", file: file, line: line)
        guard let split = response.range(of: "\r\n\r\n") else { return XCTFail("\(what): no body in \(response)", file: file, line: line) }
        let body = String(response[split.upperBound...])
        let error = try XCTUnwrap(try? JSONParser.parse(body)["error"], "\(what): \(body)", file: file, line: line)
        XCTAssertEqual(error["type"]?.stringValue, "invalid_request_error", "\(what): \(body)", file: file, line: line)
        if let code { XCTAssertEqual(error["code"]?.stringValue, code, "\(what): \(body)", file: file, line: line) }
        XCTAssertFalse((error["message"]?.stringValue ?? "").isEmpty, file: file, line: line)
        if status == 400 {
            // The request's framing is broken: nothing after it on this connection can be read.
            XCTAssertTrue(response.lowercased().contains("\r\nconnection: close\r\n"), "\(what): \(response)", file: file, line: line)
        }
    }

    // MARK: - 3. Message roles are OpenAI's, and what the template renders

    func testUnknownRoleIsRefusedAsOpenAIRefusesIt() async throws {
        let (app, _) = try server()
        try await app.test(.router) { client in
            func chat(_ messages: String) async throws -> TestResponse {
                try await post(client, "/v1/chat/completions", #"{"messages": \#(messages), "max_tokens": 2, "temperature": 0}"#)
            }
            let wizard = try await chat(#"[{"role": "user", "content": "Hi"}, {"role": "wizard", "content": "Abracadabra"}]"#)
            XCTAssertEqual(wizard.status, .badRequest, String(buffer: wizard.body))
            let e = try XCTUnwrap(try json(wizard)["error"])
            XCTAssertEqual(e["type"]?.stringValue, "invalid_request_error")
            XCTAssertEqual(e["code"]?.stringValue, "invalid_value")
            XCTAssertEqual(e["param"]?.stringValue, "messages[1].role")
            let message = try XCTUnwrap(e["message"]?.stringValue)
            for name in ["'wizard'", "'system'", "'user'", "'assistant'", "'developer'", "'tool'", "'function'"] {
                XCTAssertTrue(message.contains(name), "\(name) in: \(message)")
            }
            // Roles are case-sensitive, as OpenAI's are.
            let upper = try await chat(#"[{"role": "User", "content": "Hi"}]"#)
            XCTAssertEqual(try json(upper)["error"]?["param"]?.stringValue, "messages[0].role")
            // ChatML as this model has it renders no tool turn: refused by name.
            let tool = try await chat(#"[{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42", "tool_call_id": "a"}]"#)
            XCTAssertEqual(tool.status, .badRequest)
            let toolError = try XCTUnwrap(try json(tool)["error"])
            XCTAssertEqual(toolError["param"]?.stringValue, "messages[1].role")
            XCTAssertTrue(toolError["message"]?.stringValue?.contains("'tool'") ?? false, "\(toolError)")
            let function = try await chat(#"[{"role": "function", "name": "f", "content": "42"}]"#)
            XCTAssertEqual(function.status, .badRequest)
            // The roles OpenAI has and the template renders answer.
            let ok = try await chat(#"[{"role": "developer", "content": "Be brief."}, {"role": "system", "content": "Really."}, "#
                                    + #"{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]"#)
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))

            // /tokenize reads messages the same way; a developer message is rendered as a system message.
            let bad = try await post(client, "/tokenize", #"{"messages": [{"role": "wizard", "content": "Hi"}]}"#)
            XCTAssertEqual(bad.status, .badRequest)
            XCTAssertEqual(try json(bad)["error"]?["param"]?.stringValue, "messages[0].role")
            let developer = try json(try await post(client, "/tokenize",
                                                    #"{"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}"#))
            let system = try json(try await post(client, "/tokenize",
                                                 #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}"#))
            XCTAssertNotNil(developer["tokens"])
            XCTAssertEqual(developer["tokens"], system["tokens"])
        }
    }

    func testRoleValidation() throws {
        let chatML = try String(contentsOfFile: Fixtures.required("tiny-qwen2/hf/chat_template.jinja"), encoding: .utf8)
        // A template with a tool turn (as Qwen2.5's and Llama 3.1's have) and one with a developer turn.
        let withTool = #"{% for m in messages %}{% if m.role == "tool" %}<tool_response>{{ m.content }}</tool_response>"#
            + #"{% else %}{{ m.role }}: {{ m.content }}{% endif %}{% endfor %}"#
        let withDeveloper = #"{% for m in messages %}{% if m['role'] == 'developer' %}# Instructions{% endif %}{{ m.content }}{% endfor %}"#
        for template in [chatML, withTool, withDeveloper, nil] {
            for role in ["system", "user", "assistant"] {
                XCTAssertEqual(try ChatRole.templateRole(role, param: "p", template: template), role)
            }
            for role in ["wizard", "User", "", "ipython", "model"] {
                XCTAssertThrowsError(try ChatRole.templateRole(role, param: "messages[3].role", template: template)) { error in
                    let e = error as? APIError
                    XCTAssertEqual(e?.status, .badRequest)
                    XCTAssertEqual(e?.param, "messages[3].role")
                    XCTAssertEqual(e?.code, "invalid_value")
                    XCTAssertTrue(e?.message.contains("'\(role)'") ?? false, "\(String(describing: e))")
                }
            }
        }
        XCTAssertEqual(try ChatRole.templateRole("developer", param: "p", template: chatML), "system")
        XCTAssertEqual(try ChatRole.templateRole("developer", param: "p", template: withTool), "system")
        XCTAssertEqual(try ChatRole.templateRole("developer", param: "p", template: withDeveloper), "developer")
        XCTAssertEqual(try ChatRole.templateRole("tool", param: "p", template: withTool), "tool")
        for role in ["tool", "function"] {
            XCTAssertThrowsError(try ChatRole.templateRole(role, param: "p", template: chatML)) { error in
                XCTAssertTrue((error as? APIError)?.message.contains("'\(role)'") ?? false, "\(error)")
            }
        }
        XCTAssertThrowsError(try ChatRole.templateRole("function", param: "p", template: withTool))
    }
}
