import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Errors of HTTP calls: each names the URL, says what happened and what to do.
public struct NetError: Error, CustomStringConvertible, Sendable {
    public var url: String
    /// The HTTP status of the last answer (nil: no answer, the connection failed).
    public var status: Int?
    public var message: String
    public var advice: String

    public init(url: String, status: Int? = nil, _ message: String, advice: String) {
        self.url = url; self.status = status; self.message = message; self.advice = advice
    }
    public var description: String { "\(url): \(message); \(advice)" }
}

/// When to try a request again: on 429 (too many requests), any 5xx and a failed connection, up to
/// `attempts` tries in all, waiting `baseDelay` · 2^k seconds (at most `maxDelay`), or what a
/// `Retry-After` header asks when it asks for longer (still at most `maxDelay`).
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public init(attempts: Int = 6, baseDelay: Double = 1, maxDelay: Double = 60) {
        self.attempts = attempts; self.baseDelay = baseDelay; self.maxDelay = maxDelay
    }

    public static func retries(status: Int) -> Bool { status == 429 || (500...599).contains(status) }

    /// Seconds to wait before try `attempt + 1` (attempt counts from 1).
    public func delay(after attempt: Int, retryAfter: String?) -> Double {
        let backoff = baseDelay * pow(2, Double(attempt - 1))
        let asked = retryAfter.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return min(maxDelay, max(backoff, asked))
    }
}

/// A whole HTTP answer.
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// HTTP requests over one AsyncHTTPClient client for the process (redirects followed), retried by a `RetryPolicy`.
public enum HTTP {
    /// AsyncHTTPClient's shared settings, except that a connection that cannot be made fails the try at
    /// once (by default the pool keeps trying until the request's deadline) so that `RetryPolicy` decides,
    /// and a connection must be made within 15 s. Never shut down: it lives as long as the process.
    static let client: HTTPClient = {
        var c = HTTPClient.Configuration.singletonConfiguration
        c.connectionPool.retryConnectionEstablishment = false
        c.timeout.connect = .seconds(15)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: c)
    }()
    /// The same without following redirects (the Hub's HEAD requests read the redirect itself).
    static let clientNoRedirects: HTTPClient = {
        var c = HTTPClient.Configuration.singletonConfiguration
        c.connectionPool.retryConnectionEstablishment = false
        c.timeout.connect = .seconds(15)
        c.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: c)
    }()

    /// Sends a request and returns the answer of the last try: a success, a status that is not retried,
    /// or the last retried one when the tries run out. `onRetry` hears of each wait (status or error, seconds).
    /// - Throws: ``NetError`` when no try got an answer (the last connection error).
    public static func send(method: HTTPMethod = .GET, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                            timeout: Double = 300, maxBytes: Int = 64 << 20, policy: RetryPolicy = RetryPolicy(), followRedirects: Bool = true,
                            onRetry: (@Sendable (_ reason: String, _ seconds: Double) -> Void)? = nil) async throws -> HTTPAnswer {
        var attempt = 0
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: url)
            request.method = method
            for (n, v) in headers { request.headers.add(name: n, value: v) }
            if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
            let reason: String, retryAfter: String?
            do {
                let response = try await (followRedirects ? client : clientNoRedirects).execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
                var buffer = try await response.body.collect(upTo: maxBytes)
                let answer = HTTPAnswer(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                                        body: buffer.readBytes(length: buffer.readableBytes) ?? [])
                guard RetryPolicy.retries(status: answer.status), attempt < policy.attempts else { return answer }
                reason = "HTTP \(answer.status)"; retryAfter = answer.header("Retry-After")
            } catch {
                guard attempt < policy.attempts else {
                    throw NetError(url: url, "no answer after \(attempt) tries: \(error)",
                                   advice: "check the address and that the server is up (and the network, or a proxy)")
                }
                reason = "\(error)"; retryAfter = nil
            }
            let wait = policy.delay(after: attempt, retryAfter: retryAfter)
            onRetry?(reason, wait)
            try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
        }
    }

    /// Runs async work from synchronous code (a command, a judge called from a loop) and waits for it,
    /// on a thread of its own: never call it from inside a Swift concurrency task.
    public static func wait<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let box = ResultBox<T>(), done = DispatchSemaphore(value: 0)
        Task.detached {
            do { box.result = .success(try await work()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }
}

private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }
