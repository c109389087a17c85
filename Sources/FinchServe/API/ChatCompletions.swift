import FinchFormats
import FinchModels
import FinchTokenizer
import Foundation
import Hummingbird

extension Routes {
    /// `POST /v1/chat/completions`: the messages through the model's chat template, then generation.
    func chatCompletions(_ request: Request) async throws -> Response {
        let arrival = DispatchTime.now().uptimeNanoseconds
        let model = try state.model()
        let f = try await body(of: request)
        let adapter = try model.resolve(model: f.string("model"), adapter: f.string("adapter"))
        let messages = try chatMessages(f, template: model.tokenizer.chatTemplate)
        let s = try SamplingFields(f, maxTokensKeys: ["max_completion_tokens", "max_tokens"])
        let wantsLogprobs = try f.bool("logprobs") ?? false
        let top = try f.int("top_logprobs", in: 0...20)
        if top != nil && !wantsLogprobs {
            throw APIError.invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true")
        }
        let stream = try f.bool("stream") ?? false
        let includeUsage = try f.object("stream_options")?.bool("include_usage") ?? false
        let prompt: [Int]
        do {
            prompt = try model.lm.prompts.tokens(chat: messages)
        } catch TokenizerError.noChatTemplate {
            throw APIError(.badRequest, "This model has no chat template; start the server with --chat-template FILE, "
                           + "or use /v1/completions with your own prompt.", code: "no_chat_template")
        } catch {
            throw APIError(.badRequest, "The chat template failed on these messages: \(error)", param: "messages")
        }
        if s.maxTokens == 0 { throw APIError.invalid("max_tokens", "'max_tokens' must be at least 1 for a chat completion") }
        let maxTokens = try tokenBudget(prompt: prompt.count, asked: s.maxTokens, model: model, limit: options.maxTokens,
                                        param: "max_tokens")
        let requests = (0..<s.n).map { i in
            GenerationRequest(promptTokens: prompt, adapter: adapter, maxTokens: maxTokens, sampling: s.sampling,
                              seed: s.seed &+ UInt64(i), stopStrings: s.stop, stopTokenIds: s.ignoreEOS ? [] : nil, logprobs: wantsLogprobs ? (top ?? 0) : nil)
        }
        // The log is opt-in twice: the server keeps one (--conversation-log) and the request asks for it.
        let wantsLog = try f.bool("finch_log") ?? false
        let log = wantsLog ? conversationLog : nil
        if wantsLog && log == nil {
            throw APIError.invalid("finch_log", "this server keeps no conversation log; start it with --conversation-log FILE")
        }
        let events = try runChoices(requests, on: model, metrics: metrics, arrival: arrival)
        let id = responseId("chatcmpl-"), created = Int(Date().timeIntervalSince1970)
        let modelName = adapter ?? model.name
        let tokenizer = model.tokenizer
        let header: [(key: String, value: JSONValue)] = [
            ("id", .string(id)), ("object", .string(stream ? "chat.completion.chunk" : "chat.completion")),
            ("created", .int(created)), ("model", .string(modelName)), ("system_fingerprint", .string(fingerprint)),
        ]

        if !stream {
            let choices = try await collect(events, count: s.n)
            log?.record(model: modelName, messages: messages, sampling: s, answers: choices.map(\.text))
            let body: JSONValue = .object(header + [
                ("choices", .array(choices.enumerated().map { i, c in
                    .object([
                        ("index", .int(i)),
                        ("message", .object([("role", .string("assistant")), ("content", .string(c.text))])),
                        ("logprobs", wantsLogprobs
                            ? .object([("content", .array(c.tokens.compactMap { $0.logprob.map { chatLogprob($0, tokenizer) } }))])
                            : .null),
                        ("finish_reason", .string(finishName(c.finish))),
                    ])
                })),
                ("usage", usageJSON(prompt: prompt.count * s.n, completion: choices.reduce(0) { $0 + $1.completionTokens })),
            ])
            return jsonResponse(body)
        }

        let n = s.n
        return eventStreamResponse { writer in
            func chunk(_ choice: Int, delta: [(key: String, value: JSONValue)], logprobs: JSONValue = .null,
                       finish: String? = nil) -> JSONValue {
                .object(header + [
                    ("choices", .array([.object([
                        ("index", .int(choice)), ("delta", .object(delta)), ("logprobs", logprobs),
                        ("finish_reason", finish.map(JSONValue.string) ?? .null),
                    ])])),
                ] + (includeUsage ? [("usage", .null)] : []))
            }
            for i in 0..<n { try await writer.event(chunk(i, delta: [("role", .string("assistant")), ("content", .string(""))])) }
            var completion = 0
            var texts = [String](repeating: "", count: n)
            for await (i, e) in events {
                switch e {
                case .promptLogprobs: break
                case .token(_, let text, let lp):
                    let logprobs: JSONValue = lp.map { .object([("content", .array([chatLogprob($0, tokenizer)]))]) } ?? .null
                    if text.isEmpty && lp == nil { continue }
                    try await writer.event(chunk(i, delta: [("content", .string(text))], logprobs: logprobs))
                case .finished(let done):
                    completion += done.completionTokens
                    texts[i] = done.text
                    try await writer.event(chunk(i, delta: [], finish: finishName(done.reason)))
                case .failed(let why):
                    try await writer.event(APIError(.internalServerError, "Generation failed: \(why)", type: "server_error").json)
                    return
                }
            }
            log?.record(model: modelName, messages: messages, sampling: s, answers: texts)
            if includeUsage {
                try await writer.event(.object(header + [("choices", .array([])),
                                                         ("usage", usageJSON(prompt: prompt.count * n, completion: completion))]))
            }
        }
    }

    /// The request's messages as chat templates see them, each role checked against OpenAI's and
    /// this model's chat template (`template`, its source) first.
    func chatMessages(_ f: RequestFields, template: String?) throws -> [ChatMessage] {
        guard let items = try f.array("messages"), !items.isEmpty else {
            throw APIError.invalid("messages", "'messages' must be a non-empty list of {\"role\", \"content\"} objects")
        }
        return try items.enumerated().map { i, item in
            let m = try RequestFields(item, path: "messages[\(i)].")
            guard let given = try m.string("role") else {
                throw APIError.invalid("messages[\(i)].role", "'messages[\(i)].role' is missing")
            }
            let role = try ChatRole.templateRole(given, param: "messages[\(i)].role", template: template)
            var content: TemplateValue?
            if let text = try? m.string("content") {
                content = .string(text)
            } else if let parts = try m.array("content") {
                // OpenAI's content parts: the text parts joined (a text-only model).
                var text = ""
                for (j, part) in parts.enumerated() {
                    let p = try RequestFields(part, path: "messages[\(i)].content[\(j)].")
                    guard try p.string("type") == "text", let t = try p.string("text") else {
                        throw APIError.invalid("messages[\(i)].content[\(j)]", "only text content parts ({\"type\": \"text\", \"text\": …}) are supported")
                    }
                    text += (text.isEmpty ? "" : "\n") + t
                }
                content = .string(text)
            }
            guard case .object(let members) = item else { return ChatMessage(role: role, content: content) }
            let extra = members.filter { $0.key != "role" && $0.key != "content" }.map { ($0.key, TemplateValue($0.value)) }
            return ChatMessage(role: role, content: content, extra: extra)
        }
    }
}

/// One token's entry of a chat completion's `logprobs.content`.
func chatLogprob(_ lp: TokenLogprob, _ tokenizer: Tokenizer) -> JSONValue {
    func entry(_ id: Int, _ value: Float) -> [(key: String, value: JSONValue)] {
        let bytes = tokenizer.tokenBytes(id)
        return [("token", .string(String(decoding: bytes, as: UTF8.self))), ("logprob", .float(value)),
                ("bytes", .array(bytes.map { .int(Int($0)) }))]
    }
    return .object(entry(lp.token, lp.logprob) + [("top_logprobs", .array(lp.top.map { .object(entry($0.token, $0.logprob)) }))])
}

extension Routes {
    /// The route of this file.
    func chatCompletionRoutes() -> RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.post("/v1/chat/completions") { [self] request, _ in try await chatCompletions(request) }
        return routes
    }
}
