import FinchFormats
import FinchModels
import FinchTokenizer
import Foundation
import Hummingbird

extension Routes {
    /// `POST /v1/completions`: continue prompts given as text, a list of texts, token ids or lists
    /// of token ids. With `echo` the prompt is part of the answer, and with `logprobs` its tokens
    /// are scored too (`max_tokens: 0` only scores), as lm-evaluation-harness' `local-completions` asks.
    func completions(_ request: Request) async throws -> Response {
        let arrival = DispatchTime.now().uptimeNanoseconds
        let model = try state.model()
        let f = try await body(of: request)
        let adapter = try model.resolve(model: f.string("model"), adapter: f.string("adapter"))
        let prompts = try promptTokens(f, model.lm.prompts, vocab: model.lm.model.vocabSize)
        let s = try SamplingFields(f, maxTokensKeys: ["max_tokens"])
        let echo = try f.bool("echo") ?? false
        let logprobs = try f.int("logprobs", in: 0...20)
        let stream = try f.bool("stream") ?? false
        let includeUsage = try f.object("stream_options")?.bool("include_usage") ?? false
        try f.refuse("suffix", unless: { $0.stringValue?.isEmpty ?? false }, "insertion is not implemented")
        var requests: [GenerationRequest] = []
        for (p, prompt) in prompts.enumerated() {
            let maxTokens = try tokenBudget(prompt: prompt.count, asked: s.maxTokens ?? 16, model: model,
                                            limit: options.maxTokens, param: prompts.count > 1 ? "prompt[\(p)]" : "max_tokens")
            for _ in 0..<s.n {
                requests.append(GenerationRequest(promptTokens: prompt, adapter: adapter, maxTokens: maxTokens, sampling: s.sampling,
                                                  seed: s.seed &+ UInt64(requests.count), stopStrings: s.stop, stopTokenIds: s.ignoreEOS ? [] : nil,
                                                  logprobs: logprobs, promptLogprobs: echo && logprobs != nil))
            }
        }
        let events = try runChoices(requests, on: model, metrics: metrics, arrival: arrival)
        let tokenizer = model.tokenizer, n = s.n
        let header: [(key: String, value: JSONValue)] = [
            ("id", .string(responseId("cmpl-"))), ("object", .string("text_completion")),
            ("created", .int(Int(Date().timeIntervalSince1970))), ("model", .string(adapter ?? model.name)),
            ("system_fingerprint", .string(fingerprint)),
        ]
        let promptTotal = prompts.reduce(0) { $0 + $1.count } * n

        if !stream {
            let choices = try await collect(events, count: requests.count)
            let body: JSONValue = .object(header + [
                ("choices", .array(choices.enumerated().map { i, c in
                    let prompt = prompts[i / n]
                    let echoed = echo ? tokenizer.decode(prompt) : ""
                    var lp: JSONValue = .null
                    if let k = logprobs {
                        lp = completionLogprobs(prompt: echo ? prompt : nil, promptScores: c.promptScores,
                                                generated: c.tokens + (c.endToken.map { [$0] } ?? []), top: k,
                                                tokenizer: tokenizer)
                    }
                    return .object([("index", .int(i)), ("text", .string(echoed + c.text)), ("logprobs", lp),
                                    ("finish_reason", .string(finishName(c.finish)))])
                })),
                ("usage", usageJSON(prompt: promptTotal, completion: choices.reduce(0) { $0 + $1.completionTokens })),
            ])
            return jsonResponse(body)
        }

        return eventStreamResponse { writer in
            func chunk(_ i: Int, _ text: String, logprobs: JSONValue = .null, finish: String? = nil) -> JSONValue {
                .object(header + [("choices", .array([.object([
                    ("index", .int(i)), ("text", .string(text)), ("logprobs", logprobs),
                    ("finish_reason", finish.map(JSONValue.string) ?? .null),
                ])]))] + (includeUsage ? [("usage", .null)] : []))
            }
            var completion = 0
            var echoed = Set<Int>()
            for await (i, e) in events {
                let prompt = prompts[i / n]
                func sendEcho(_ scores: [TokenLogprob?]?) async throws {
                    guard echo, !echoed.contains(i) else { return }
                    echoed.insert(i)
                    let lp = logprobs.map { completionLogprobs(prompt: prompt, promptScores: scores, generated: [], top: $0,
                                                               tokenizer: tokenizer) } ?? .null
                    try await writer.event(chunk(i, tokenizer.decode(prompt), logprobs: lp))
                }
                switch e {
                case .promptLogprobs(let scores):
                    try await sendEcho(scores)
                case .token(let id, let text, let lp):
                    try await sendEcho(nil)
                    if text.isEmpty && logprobs == nil { continue }
                    let l = logprobs.map { completionLogprobs(prompt: nil, promptScores: nil, generated: [(id, lp)], top: $0,
                                                              tokenizer: tokenizer) } ?? .null
                    try await writer.event(chunk(i, text, logprobs: l))
                case .finished(let done):
                    try await sendEcho(nil)
                    completion += done.completionTokens
                    let l = logprobs.flatMap { k in done.endToken.map {
                        completionLogprobs(prompt: nil, promptScores: nil, generated: [$0], top: k, tokenizer: tokenizer) } } ?? .null
                    try await writer.event(chunk(i, "", logprobs: l, finish: finishName(done.reason)))
                case .failed(let why):
                    try await writer.event(APIError(.internalServerError, "Generation failed: \(why)", type: "server_error").json)
                    return
                }
            }
            if includeUsage {
                try await writer.event(.object(header + [("choices", .array([])),
                                                         ("usage", usageJSON(prompt: promptTotal, completion: completion))]))
            }
        }
    }

    /// The prompts of a completion request as token ids (texts by the model's prompt format: with
    /// the tokenizer's special tokens, a BOS where it adds one, T5's closing `</s>`).
    private func promptTokens(_ f: RequestFields, _ format: PromptFormat, vocab: Int) throws -> [[Int]] {
        guard f.has("prompt") else { throw APIError.invalid("prompt", "'prompt' is missing") }
        if let text = try? f.string("prompt") { return [format.tokens(prompt: text)] }
        guard let items = try f.array("prompt"), !items.isEmpty else {
            throw APIError.invalid("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists")
        }
        func ids(_ list: [JSONValue], _ path: String) throws -> [Int] {
            try list.enumerated().map { j, v in
                guard let t = v.wholeNumberValue else {
                    throw APIError.invalid("prompt", "'\(path)[\(j)]' must be a token id, got \(v.kindName)")
                }
                guard t >= 0 && t < vocab else {
                    throw APIError.invalid("prompt", "'\(path)[\(j)]' = \(t) is not a token id of this model (0..<\(vocab))")
                }
                return t
            }
        }
        if items.allSatisfy({ $0.wholeNumberValue != nil }) { return [try ids(items, "prompt")] }
        return try items.enumerated().map { i, item in
            if let s = item.stringValue { return format.tokens(prompt: s) }
            guard let list = item.arrayValue else {
                throw APIError.invalid("prompt", "'prompt[\(i)]' must be a string or a list of token ids, got \(item.kindName)")
            }
            return try ids(list, "prompt[\(i)]")
        }
    }
}

/// A completion's `logprobs`: `tokens`, `token_logprobs`, `top_logprobs` and `text_offset`, over
/// the echoed prompt (when given; its first token has no score) and the generated tokens.
func completionLogprobs(prompt: [Int]?, promptScores: [TokenLogprob?]?, generated: [(id: Int, logprob: TokenLogprob?)],
                        top: Int, tokenizer: Tokenizer) -> JSONValue {
    var tokens: [JSONValue] = [], values: [JSONValue] = [], tops: [JSONValue] = [], offsets: [JSONValue] = []
    var offset = 0
    func add(_ id: Int, _ lp: TokenLogprob?) {
        let text = String(decoding: tokenizer.tokenBytes(id), as: UTF8.self)
        tokens.append(.string(text))
        values.append(lp.map { .float($0.logprob) } ?? .null)
        tops.append(lp.map { l in .object(l.top.prefix(top).map { (String(decoding: tokenizer.tokenBytes($0.token), as: UTF8.self), .float($0.logprob)) }) } ?? .null)
        offsets.append(.int(offset))
        offset += text.count
    }
    if let prompt {
        for (j, id) in prompt.enumerated() { add(id, promptScores.flatMap { j < $0.count ? $0[j] : nil }) }
    }
    for g in generated { add(g.id, g.logprob) }
    return .object([("tokens", .array(tokens)), ("token_logprobs", .array(values)), ("top_logprobs", .array(tops)),
                    ("text_offset", .array(offsets))])
}

extension Routes {
    /// The route of this file.
    func completionRoutes() -> RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.post("/v1/completions") { [self] request, _ in try await completions(request) }
        return routes
    }
}
