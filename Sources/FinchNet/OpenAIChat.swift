import FinchFormats
import Foundation

/// A client of an OpenAI-compatible chat-completions API (OpenAI, llama.cpp's server, vLLM,
/// `finch serve`): `POST {baseURL}/chat/completions` with the messages, the reply's text back.
public struct OpenAIChat: Sendable {
    /// The API's base, as the `openai` package's `base_url` takes it (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:8080/v1`); a URL that already ends in `/chat/completions` is used as it is.
    public var baseURL: String
    public var model: String
    /// Sent as `Authorization: Bearer KEY` when set (`OPENAI_API_KEY`).
    public var apiKey: String?
    public var temperature: Double = 0
    public var maxTokens: Int = 512
    public var timeout: Double = 300
    public var policy = RetryPolicy()

    public init(baseURL: String, model: String, apiKey: String?) {
        self.baseURL = baseURL; self.model = model; self.apiKey = apiKey
    }

    public var endpoint: String {
        let b = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        return b.hasSuffix("/chat/completions") ? b : b + "/chat/completions"
    }

    /// The request body for `messages` ((role, content) pairs).
    public func body(_ messages: [(role: String, content: String)]) -> JSONValue {
        .object([
            ("model", .string(model)),
            ("messages", .array(messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) })),
            ("temperature", .double(temperature)), ("max_tokens", .int(maxTokens)),
        ])
    }

    /// The first choice's message text.
    /// - Throws: ``NetError`` naming the endpoint: what the API answered (401/403: the key; 404: the
    ///   URL or model; 429/5xx after the retries ran out) or an answer that is not a chat completion.
    public func complete(_ messages: [(role: String, content: String)],
                         onRetry: (@Sendable (String, Double) -> Void)? = nil) async throws -> String {
        var headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
        if let apiKey, !apiKey.isEmpty { headers.append(("Authorization", "Bearer " + apiKey)) }
        let url = endpoint
        let answer = try await HTTP.send(method: .POST, url: url, headers: headers, body: Array(body(messages).serialized().utf8),
                                         timeout: timeout, policy: policy, onRetry: onRetry)
        let json = try? JSONParser.parse(answer.text)
        guard answer.status == 200 else {
            let said = json?["error"]?["message"]?.stringValue ?? String(answer.text.prefix(300))
            let advice: String
            switch answer.status {
            case 401, 403: advice = "set OPENAI_API_KEY to a key this API accepts (and one allowed to use model \(model))"
            case 404: advice = "check --judge-url (the API's base, e.g. https://api.openai.com/v1) and --judge-model (the model must exist there)"
            case 429: advice = "the API is rate-limiting; try again later, or judge fewer cases at once (--judge-concurrency)"
            case 400: advice = "the API refused the request; check --judge-model and --judge-max-tokens"
            default: advice = RetryPolicy.retries(status: answer.status) ? "the server kept failing; try again later" : "check --judge-url"
            }
            let tries = RetryPolicy.retries(status: answer.status) ? " after \(policy.attempts) tries" : ""
            throw NetError(url: url, status: answer.status, "HTTP \(answer.status)\(tries): \(said)", advice: advice)
        }
        guard let choice = json?["choices"]?.arrayValue?.first,
              let text = choice["message"]?["content"]?.stringValue ?? choice["text"]?.stringValue else {
            throw NetError(url: url, status: 200, "the answer is not a chat completion (no choices[0].message.content): \(answer.text.prefix(200))",
                           advice: "point --judge-url at an OpenAI-compatible API's base (…/v1)")
        }
        return text
    }
}
