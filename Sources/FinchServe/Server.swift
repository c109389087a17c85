import FinchEval
import FinchFormats
import FinchModels
import FinchTokenizer
import Foundation
import Hummingbird
import Logging
import NIOCore

/// How `finch serve` listens and what it allows.
public struct ServeOptions: Sendable {
    /// The address to bind (loopback unless told otherwise).
    public var host = "127.0.0.1"
    public var port = 8080
    /// When set, every route but the page and `/health` needs `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// Request bodies larger than this are refused (413).
    public var maxBodyBytes = 8 << 20
    /// New tokens one sequence may ask for at most.
    public var maxTokens = 4096
    /// Appends the chat completions that ask for it (`"finch_log": true`, the page's checkbox) to
    /// this JSON-lines file: messages, settings, answers.
    public var conversationLog: String?
    /// The human-evaluation session served at `/eval` (pairs of answers to rate), if any.
    public var humanEval: HumanEvalSession?

    public init() {}
}

/// The HTTP routes of the server: OpenAI's API, tokenization, adapters, health, metrics and the chat page.
public final class Routes: Sendable {
    let state: ServerState
    let options: ServeOptions
    public let metrics: ServerMetrics
    let conversationLog: ConversationLog?
    let fingerprint = "finch-0.1"

    public init(state: ServerState, options: ServeOptions, metrics: ServerMetrics = ServerMetrics()) throws {
        self.state = state; self.options = options; self.metrics = metrics
        conversationLog = try options.conversationLog.map { try ConversationLog(path: $0) }
    }

    /// The router: the middleware that answers errors as OpenAI does and counts requests by the route's own
    /// pattern, the open routes, then the API key check, then each API file's routes. An unknown path goes
    /// through both middlewares too (401 without the key when one is set, else 404).
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIMiddleware(metrics: metrics))
        router.addRoutes(openRoutes())
        router.add(middleware: APIKeyMiddleware(apiKey: options.apiKey))
        router.addRoutes(serviceRoutes())
        router.addRoutes(completionRoutes())
        router.addRoutes(chatCompletionRoutes())
        router.addRoutes(humanEvalRoutes())
        return router
    }

    /// The routes anyone may call, with or without the API key: the two pages and the health check.
    func openRoutes() -> RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/") { _, _ in ChatPage.response() }
        routes.get("/eval") { [self] _, _ in EvalPage.response(enabled: options.humanEval != nil) }
        routes.get("/health") { [state] _, _ -> Response in
            switch state.phase {
            case .ready: return jsonResponse(.object([("status", .string("ok"))]))
            case .loading: return jsonResponse(.object([("status", .string("loading"))]), status: .serviceUnavailable)
            case .failed(let why):
                return jsonResponse(.object([("status", .string("failed")), ("error", .string(why))]), status: .serviceUnavailable)
            }
        }
        return routes
    }

    /// The routes of this file: metrics, the server's own info, models and adapters, tokenization.
    func serviceRoutes() -> RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/metrics") { [metrics] _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.text())))
        }
        routes.get("/finch/info") { [self] _, _ in try info() }
        routes.get("/v1/models") { [self] _, _ in try models() }
        routes.get("/v1/models/{id}") { [self] _, context in try model(id: context.parameters.get("id") ?? "") }
        routes.post("/v1/adapters") { [self] request, _ in try await loadAdapter(request) }
        routes.post("/tokenize") { [self] request, _ in try await tokenize(request) }
        routes.post("/detokenize") { [self] request, _ in try await detokenize(request) }
        return routes
    }

    /// The request body as JSON fields (bounded by `maxBodyBytes`). A body that cannot be read is
    /// the client's fault, never the server's: too large is 413; badly framed (a chunk size that is
    /// not hexadecimal, a connection that ends inside the body) is 400, and the connection closes
    /// (its next bytes cannot be told apart from this body's).
    func body(of request: Request) async throws -> RequestFields {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: options.maxBodyBytes)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "The request body is larger than \(options.maxBodyBytes) bytes.", code: "body_too_large")
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "The request body is larger than \(options.maxBodyBytes) bytes.", code: "body_too_large")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // NIOHTTP1's HTTPParserError (invalidChunkSize, invalidEOFState, ...) as the body is read.
            var e = APIError(.badRequest, "The request body cannot be read: \(error). Send a JSON object framed by a correct "
                             + "Content-Length or by valid chunked encoding (hexadecimal chunk sizes, each chunk ended by CRLF, "
                             + "a last chunk of size 0).", code: "invalid_body")
            e.closesConnection = true
            throw e
        }
        return try RequestFields.parse(Array(buffer.readableBytesView))
    }

    private func modelObject(_ id: String, _ model: ServedModel, root: String?) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [("id", .string(id)), ("object", .string("model")),
                                                    ("created", .int(model.created)), ("owned_by", .string("finch"))]
        if let root { m += [("parent", .string(model.name)), ("root", .string(root))] }
        m.append(("max_model_len", .int(model.contextLength)))
        return .object(m)
    }

    /// What the chat page needs: the base model, the adapters, the context, whether conversations can be logged.
    func info() throws -> Response {
        let model = try state.model()
        return jsonResponse(.object([
            ("model", .string(model.name)), ("adapters", .array(model.adapters.keys.sorted().map(JSONValue.string))),
            ("context_length", .int(model.contextLength)), ("max_tokens", .int(options.maxTokens)),
            ("max_batch", .int(model.engine.maxBatch)), ("conversation_log", .bool(conversationLog != nil)),
        ]))
    }

    func models() throws -> Response {
        let model = try state.model()
        let data = [modelObject(model.name, model, root: nil)]
            + model.adapters.sorted { $0.key < $1.key }.map { modelObject($0.key, model, root: $0.value) }
        return jsonResponse(.object([("object", .string("list")), ("data", .array(data))]))
    }

    func model(id: String) throws -> Response {
        let model = try state.model()
        if id == model.name || id == "base" { return jsonResponse(modelObject(model.name, model, root: nil)) }
        guard let path = model.adapters[id] else { throw APIError.modelNotFound(id, known: model.modelIds) }
        return jsonResponse(modelObject(id, model, root: path))
    }

    /// `POST /v1/adapters {"name", "path"}`: loads a PEFT adapter directory at run time.
    func loadAdapter(_ request: Request) async throws -> Response {
        let model = try state.model()
        let f = try await body(of: request)
        guard let name = try f.string("name") else { throw APIError.invalid("name", "'name' is missing") }
        guard let path = try f.string("path") else { throw APIError.invalid("path", "'path' (an adapter directory) is missing") }
        try await model.loadAdapter(name: name, directory: path)
        return jsonResponse(modelObject(name, model, root: path), status: .created)
    }

    /// `POST /tokenize {"prompt"}` or `{"messages"}` (through the chat template): the token ids.
    func tokenize(_ request: Request) async throws -> Response {
        let model = try state.model()
        let f = try await body(of: request)
        let tokens: [Int]
        if let prompt = try f.string("prompt") {
            tokens = model.tokenizer.encode(prompt, addSpecialTokens: try f.bool("add_special_tokens") ?? true)
        } else if f.has("messages") {
            let messages = try chatMessages(f, template: model.tokenizer.chatTemplate)
            do { tokens = try model.tokenizer.encodeChat(messages, addGenerationPrompt: try f.bool("add_generation_prompt") ?? true) }
            catch { throw APIError(.badRequest, "Cannot apply the chat template: \(error)", param: "messages") }
        } else {
            throw APIError.invalid("prompt", "give 'prompt' (a string) or 'messages'")
        }
        return jsonResponse(.object([("tokens", .array(tokens.map { .int($0) })), ("count", .int(tokens.count)),
                                     ("max_model_len", .int(model.contextLength))]))
    }

    /// `POST /detokenize {"tokens"}`: the text of token ids.
    func detokenize(_ request: Request) async throws -> Response {
        let model = try state.model()
        let f = try await body(of: request)
        guard let items = try f.array("tokens") else { throw APIError.invalid("tokens", "'tokens' (a list of token ids) is missing") }
        let vocab = model.lm.model.vocabSize
        let ids = try items.enumerated().map { i, v -> Int in
            guard let t = v.wholeNumberValue, t >= 0, t < vocab else {
                throw APIError.invalid("tokens", "'tokens[\(i)]' is not a token id of this model (0..<\(vocab))")
            }
            return t
        }
        return jsonResponse(.object([("prompt", .string(model.tokenizer.decode(ids)))]))
    }
}

/// Answers every error as OpenAI's error object and counts requests. The `route` label is the router's own
/// pattern for the request (`context.endpointPath`, e.g. `/v1/models/{id}`), so it is a bounded set that
/// needs no list of its own; a request no route matched is counted as `other`.
struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch let e as APIError {
            response = e.jsonResponse
        } catch let e as HTTPError {
            let message = e.status == .notFound ? "No route \(request.method) \(request.uri.path); see GET /v1/models, "
                + "POST /v1/chat/completions, POST /v1/completions." : (e.body ?? e.status.reasonPhrase)
            let err = APIError(e.status, message, type: e.status == .notFound ? "not_found_error" : "invalid_request_error")
            response = jsonResponse(err.json, status: e.status)
        } catch {
            context.logger.error("request failed: \(error)")
            let err = APIError(.internalServerError, "The server failed on this request: \(error)", type: "server_error")
            response = jsonResponse(err.json, status: .internalServerError)
        }
        metrics.request(route: Self.routeLabel(context.endpointPath), status: response.status.code)
        return response
    }

    /// The metrics label of a request: the matched route's pattern, or `other` when none matched
    /// (hummingbird names that case `NotFound`).
    static func routeLabel(_ endpointPath: String?) -> String {
        guard let endpointPath, endpointPath != "NotFound" else { return "other" }
        return endpointPath
    }
}

/// Refuses a request without `Authorization: Bearer <key>` when the server has a key. The router adds it after
/// the open routes, so it guards every other route and the unknown paths.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let apiKey, request.headers[.authorization] != "Bearer \(apiKey)" {
            throw APIError(.unauthorized, "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key "
                           + "the server was started with (--api-key).", type: "authentication_error", code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}

/// The opt-in log of chat completions, one JSON line each, for human evaluation.
final class ConversationLog: @unchecked Sendable {
    let file: JSONLinesFile

    init(path: String) throws {
        do {
            file = try JSONLinesFile(path: path)
        } catch {
            throw APIError(.internalServerError, "cannot open the conversation log: \(error)")
        }
    }

    func record(model: String, messages: [ChatMessage], sampling: SamplingFields, answers: [String]) {
        let line: JSONValue = .object([
            ("time", .string(ISO8601DateFormatter().string(from: Date()))), ("model", .string(model)),
            ("messages", .array(messages.map { m in
                .object([("role", .string(m.role)), ("content", m.content.map { JSONValue.string(templateText($0)) } ?? .null)])
            })),
            ("temperature", .float(sampling.sampling.temperature)), ("top_p", .float(sampling.sampling.topP)),
            ("top_k", .int(sampling.sampling.topK)), ("repetition_penalty", .float(sampling.sampling.repetitionPenalty)),
            ("seed", .number(String(sampling.seed))), ("answers", .array(answers.map(JSONValue.string))),
        ])
        try? file.append(line)
    }
}

private func templateText(_ v: TemplateValue) -> String {
    if case .string(let s) = v { return s }
    return "\(v)"
}

/// `finch serve`: binds, answers 503 while the model loads, then serves it.
public enum FinchServer {
    /// Builds the application for a state the caller fills in (`state.phase = .ready(...)`).
    public static func application(state: ServerState, options: ServeOptions, metrics: ServerMetrics = ServerMetrics(),
                                   logger: Logger) throws -> some ApplicationProtocol {
        let routes = try Routes(state: state, options: options, metrics: metrics)
        return Application(router: routes.router(),
                           configuration: .init(address: .hostname(options.host, port: options.port), serverName: "finch"),
                           logger: logger)
    }
}
