import FinchFormats
import FinchModels
import FinchTokenizer
import Foundation
import Hummingbird

/// The sampling fields shared by chat and text completions.
struct SamplingFields {
    var sampling = SamplingOptions(temperature: 1)
    var seed: UInt64
    var stop: [String] = []
    var maxTokens: Int?
    var n = 1
    /// Generate past the end-of-sequence token (vLLM's `ignore_eos`: fixed lengths for benchmarks).
    var ignoreEOS = false

    init(_ f: RequestFields, maxTokensKeys: [String]) throws {
        sampling.temperature = try f.float("temperature", in: 0...2) ?? 1
        sampling.topP = try f.float("top_p", in: 0...1) ?? 1
        if sampling.topP == 0 { throw APIError.invalid("top_p", "'top_p' must be greater than 0") }
        let k = try f.int("top_k", in: -1...1_000_000) ?? 0
        sampling.topK = max(k, 0)   // -1 = off, as vLLM spells it
        sampling.minP = try f.float("min_p", in: 0...1) ?? 0
        sampling.repetitionPenalty = try f.float("repetition_penalty", in: 0.01...10) ?? 1
        seed = try f.int("seed").map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: 0...UInt64.max)
        stop = try f.strings("stop") ?? []
        if stop.count > 16 { throw APIError.invalid("stop", "'stop' has \(stop.count) strings; give at most 16") }
        stop.removeAll { $0.isEmpty }
        for key in maxTokensKeys {
            if let m = try f.int(key, in: 0...Int(Int32.max)) { maxTokens = m; break }
        }
        n = try f.int("n", in: 1...16) ?? 1
        ignoreEOS = try f.bool("ignore_eos") ?? false
        try f.refuse("frequency_penalty", unless: { $0.doubleValue == 0 }, "use repetition_penalty")
        try f.refuse("presence_penalty", unless: { $0.doubleValue == 0 }, "use repetition_penalty")
        try f.refuse("logit_bias", unless: { $0.objectValue?.isEmpty ?? false }, "leave it out")
        try f.refuse("best_of", unless: { ($0.wholeNumberValue ?? 0) <= 1 }, "ask for n choices instead")
        try f.refuse("tools", unless: { $0.arrayValue?.isEmpty ?? false }, "tool calling is not implemented")
        try f.refuse("response_format", unless: { $0["type"]?.stringValue == "text" }, "only plain text is produced")
    }
}

/// One choice's events gathered (non-streaming answers).
struct CollectedChoice {
    var text = ""
    var tokens: [(id: Int, logprob: TokenLogprob?)] = []
    var promptScores: [TokenLogprob?]?
    var finish: FinishReason = .length
    var promptTokens = 0
    var completionTokens = 0
    var endToken: (id: Int, logprob: TokenLogprob?)?
}

/// The finish reason as OpenAI names it.
func finishName(_ r: FinishReason) -> String { r == .length ? "length" : "stop" }

/// Runs requests (one per choice) and merges their events, tagged by choice index. Stopping the
/// iteration, or dropping the stream unread (a handler that threw), cancels every choice.
func runChoices(_ requests: [GenerationRequest], on model: ServedModel, metrics: ServerMetrics,
                arrival: UInt64) throws -> AsyncStream<(Int, GenerationEvent)> {
    guard let streams = model.engine.submit(requests) else {
        throw APIError(.tooManyRequests, "The server's queue is full; retry later.", type: "server_error", code: "queue_full")
    }
    for r in requests { metrics.prompt(tokens: r.promptTokens.count) }
    let (out, continuation) = AsyncStream<(Int, GenerationEvent)>.makeStream()
    let task = Task {
        await withTaskGroup(of: Void.self) { group in
            for (i, s) in streams.enumerated() {
                group.addTask {
                    var last: UInt64?
                    for await e in s {
                        if case .token = e {
                            let now = DispatchTime.now().uptimeNanoseconds
                            if let last { metrics.tokenGap(Double(now - last) / 1e9) }
                            else { metrics.firstToken(after: Double(now - arrival) / 1e9) }
                            last = now
                        }
                        continuation.yield((i, e))
                    }
                }
            }
        }
        continuation.finish()
    }
    continuation.onTermination = { _ in task.cancel() }
    return out
}

/// Waits for every choice to finish.
func collect(_ events: AsyncStream<(Int, GenerationEvent)>, count: Int) async throws -> [CollectedChoice] {
    var choices = [CollectedChoice](repeating: CollectedChoice(), count: count)
    for await (i, e) in events {
        switch e {
        case .promptLogprobs(let s): choices[i].promptScores = s
        case .token(let id, _, let lp): choices[i].tokens.append((id, lp))
        case .finished(let done):
            choices[i].finish = done.reason; choices[i].text = done.text; choices[i].promptTokens = done.promptTokens
            choices[i].completionTokens = done.completionTokens; choices[i].endToken = done.endToken
        case .failed(let why):
            throw APIError(.internalServerError, "Generation failed: \(why)", type: "server_error")
        }
    }
    return choices
}

func usageJSON(prompt: Int, completion: Int) -> JSONValue {
    .object([("prompt_tokens", .int(prompt)), ("completion_tokens", .int(completion)),
             ("total_tokens", .int(prompt + completion))])
}

/// A new response id (`chatcmpl-…`, `cmpl-…`).
func responseId(_ prefix: String) -> String {
    let chars = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return prefix + String((0..<24).map { _ in chars.randomElement()! })
}

/// Server-sent events: `data: <json>` blocks, then `data: [DONE]`.
func eventStreamResponse(_ write: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void) -> Response {
    Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
             body: ResponseBody { writer in
                 try await write(&writer)
                 try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                 try await writer.finish(nil)
             })
}

extension ResponseBodyWriter {
    mutating func event(_ value: JSONValue) async throws {
        try await write(ByteBuffer(string: "data: " + value.serialized() + "\n\n"))
    }
}

/// Checks a tokenized prompt against the context and returns the new-token budget.
func tokenBudget(prompt: Int, asked: Int?, model: ServedModel, limit: Int, param: String) throws -> Int {
    if prompt == 0 { throw APIError.invalid("prompt", "the prompt is empty; give at least one token") }
    if let asked, asked > limit {
        throw APIError.invalid(param, "'\(param)' is \(asked); this server allows at most \(limit) new tokens (--max-tokens)")
    }
    let room = model.contextLength - prompt
    if room < 0 || (asked ?? 0) > room {
        throw APIError(.badRequest, "This model's context is \(model.contextLength) tokens; the prompt has \(prompt)"
                       + (asked.map { " and \($0) new tokens were asked for" } ?? "") + ". Shorten the prompt or ask for fewer tokens.",
                       param: asked == nil ? "messages" : param, code: "context_length_exceeded")
    }
    return min(asked ?? room, limit)
}
