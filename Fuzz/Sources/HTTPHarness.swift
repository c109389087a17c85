import FinchEval
import FinchFormats
import FinchModels
@testable import FinchServe
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded

/// `finch serve`'s routes with a fuzzed request: the input's first line is the path (`POST` to it;
/// `GET ` in front asks for a GET), the rest is the body. The server is the real one — the router,
/// its middleware, body limits, JSON parsing, field checks, chat templates, tokenization, the batch
/// engine generating on tiny Qwen2 with its PEFT adapter loaded, and the response (streamed ones
/// too) written out — so a request can reach everything a client's can. Findings: crashes,
/// sanitizer reports, hangs, any 5xx answer (a request the server could not handle is a bug;
/// bad requests are 4xx), and an answer that is not valid JSON or a well-formed event stream.
enum HTTPHarness {
    static let responder: RouterResponder<BasicRequestContext> = {
        do {
            let dir = Harness.root + "/Tests/Fixtures/tiny-qwen2"
            let lm = try LoadedModel.load(dir + "/hf")
            let served = try ServedModel.start(lm: lm, adapters: [(name: "tuned", directory: dir + "/peft")], maxBatch: 4,
                                               contextLength: 96, name: "tiny")
            var options = ServeOptions()
            options.maxTokens = 6
            options.maxBodyBytes = 1 << 20
            options.conversationLog = Harness.scratch + "-conversations.jsonl"
            let sets = [try AnswerSet.load(spec: "base=" + Harness.root + "/Tests/Fixtures/eval/answers_base.jsonl"),
                        try AnswerSet.load(spec: "tuned=" + Harness.root + "/Tests/Fixtures/eval/answers_tuned.jsonl")]
            options.humanEval = try HumanEvalSession(systems: sets, questions: try JudgeQuestion.from(sets[0]),
                                                     log: Harness.scratch + "-ratings.jsonl", tournaments: 1)
            return try Routes(state: ServerState(model: served), options: options).router().buildResponder()
        } catch {
            fatalError("http harness: cannot start the server: \(error)")
        }
    }()

    static let logger: Logger = {
        var l = Logger(label: "fuzz")
        l.logLevel = .critical
        return l
    }()

    /// The connection every request arrives on (a test channel: no sockets).
    static let channel = EmbeddedChannel()

    /// Collects a response body.
    struct Sink: ResponseBodyWriter {
        final class Bytes: @unchecked Sendable { var all: [UInt8] = [] }
        let bytes = Bytes()
        mutating func write(_ buffer: ByteBuffer) async throws { bytes.all += buffer.readableBytesView }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    /// What is wrong with a response body, if anything: a JSON answer must parse; an event
    /// stream must be `data: <JSON>` events ending with `data: [DONE]`.
    static func problem(_ body: [UInt8], contentType: String?) -> String? {
        if contentType?.hasPrefix("application/json") == true {
            do { _ = try JSONParser.parse(body) } catch { return "invalid JSON answer: \(error)" }
        } else if contentType == "text/event-stream" {
            let events = String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n").dropLast()
            guard events.last == "data: [DONE]" else { return "the event stream does not end with data: [DONE]" }
            for e in events.dropLast() {
                guard e.hasPrefix("data: ") else { return "an event that is not data: \(e.prefix(80))" }
                do { _ = try JSONParser.parse(Array(e.utf8.dropFirst(6))) } catch { return "an event that is not JSON: \(error)" }
            }
        }
        return nil
    }

    static func request(_ data: [UInt8]) {
        let newline = data.firstIndex(of: 10) ?? data.count
        var line = String(decoding: data[..<newline], as: UTF8.self)
        let body = newline < data.count ? Array(data[(newline + 1)...]) : []
        var method = HTTPRequest.Method.post
        if line.hasPrefix("GET ") { method = .get; line.removeFirst(4) }
        guard line.hasPrefix("/"), !line.contains(" ") else { return }
        let path = line
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var status = 0
        nonisolated(unsafe) var bad: String?
        Task {
            var buffer = ByteBufferAllocator().buffer(capacity: body.count)
            buffer.writeBytes(body)
            let request = Request(head: HTTPRequest(method: method, scheme: "http", authority: "localhost", path: path,
                                                    headerFields: [.contentType: "application/json"]),
                                  body: RequestBody(buffer: buffer))
            let context = BasicRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
            do {
                let response = try await responder.respond(to: request, context: context)
                status = response.status.code
                let sink = Sink()
                try await response.body.write(sink)
                bad = problem(sink.bytes.all, contentType: response.headers[.contentType])
            } catch let e as HTTPResponseError {
                status = e.status.code
            } catch {
                status = 500
                FileHandle.standardError.write(Data("http harness: \(method) \(path) threw \(error)\n".utf8))
            }
            done.signal()
        }
        done.wait()
        if status >= 500 || bad != nil {
            FileHandle.standardError.write(Data("http harness: \(method) \(path) answered \(status) \(bad ?? "")\n".utf8))
            abort()
        }
    }
}
