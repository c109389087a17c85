import FinchFormats
import FinchNet
import Foundation

/// A judge behind an OpenAI-compatible chat API (OpenAI's GPT-4 as qlora asked it, llama.cpp's server,
/// vLLM, `finch serve`): each case sent as the system line and the user message of ``JudgePrompt`` (in
/// `explain` mode reasons then a verdict line, read as qlora reads GPT-4's; in `choice` mode the number
/// alone), `concurrency` requests at a time, 429 and 5xx retried with backoff (``RetryPolicy``). Every
/// reply goes to the cache as it arrives, keyed by the endpoint and the whole request, so a rerun (or a
/// run stopped half way and started again) asks the API only what it has not answered.
public final class APIJudge: PairwiseJudge, @unchecked Sendable {
    public let chat: OpenAIChat
    public let mode: ModelJudge.Mode
    public var concurrency = 4
    public let cache: JudgeCache?
    /// Heard of each retry (the reason and the seconds waited).
    public var onRetry: (@Sendable (String, Double) -> Void)?
    private let lock = NSLock()
    private var counts = (asked: 0, cached: 0)

    public init(chat: OpenAIChat, mode: ModelJudge.Mode = .explain, cache: JudgeCache? = nil) {
        self.chat = chat; self.mode = mode; self.cache = cache
    }

    /// Cases answered by the API and from the cache so far.
    public var asked: Int { lock.lock(); defer { lock.unlock() }; return counts.asked }
    public var fromCache: Int { lock.lock(); defer { lock.unlock() }; return counts.cached }

    private func count(asked: Int = 0, cached: Int = 0) {
        lock.withLock { counts.asked += asked; counts.cached += cached }
    }

    public func messages(_ c: JudgeCase) -> [(role: String, content: String)] {
        [("system", JudgePrompt.system), ("user", JudgePrompt.user(c, explain: mode == .explain))]
    }

    /// The cache key of a case: SHA-256 of the endpoint and the request body.
    public func key(_ c: JudgeCase) -> String {
        SHA256Hex.of(Array((chat.endpoint + "\n" + chat.body(messages(c)).serialized()).utf8))
    }

    /// Waits for `judgeAsync` on a thread of its own (call it from synchronous code, not from a task).
    public func judge(_ cases: [JudgeCase]) throws -> [JudgeOutput] {
        try HTTP.wait { try await self.judgeAsync(cases) }
    }

    public func judgeAsync(_ cases: [JudgeCase]) async throws -> [JudgeOutput] {
        var replies = [String?](repeating: nil, count: cases.count)
        var pending: [Int] = []
        for (i, c) in cases.enumerated() {
            if let hit = cache?.reply(for: key(c)) { replies[i] = hit } else { pending.append(i) }
        }
        count(cached: cases.count - pending.count)
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var next = 0
            func launch() {
                let i = pending[next]; next += 1
                let c = cases[i]
                group.addTask {
                    let text = try await self.chat.complete(self.messages(c), onRetry: self.onRetry)
                    try self.cache?.store(key: self.key(c), model: self.chat.model, reply: text)
                    return (i, text)
                }
            }
            while next < min(max(1, concurrency), pending.count) { launch() }
            while let (i, text) = try await group.next() {
                replies[i] = text
                count(asked: 1)
                if next < pending.count { launch() }
            }
        }
        return replies.map { JudgeOutput(verdict: JudgePrompt.parseVerdict($0!), text: $0!) }
    }
}

/// The judge's replies kept in a JSON-lines file (`{"key", "model", "reply"}` a line), read at open and
/// appended (synced) as replies arrive; a line a killed run left unfinished is cut off.
public final class JudgeCache: @unchecked Sendable {
    public let path: String
    private let file: JSONLinesFile
    private var replies: [String: String] = [:]
    private let lock = NSLock()

    /// `$FINCH_HOME/judge-cache.jsonl` (else under `$XDG_CACHE_HOME/finch` or `~/.cache/finch`).
    public static func defaultPath(home: URL) -> String { home.appendingPathComponent("judge-cache.jsonl").path }

    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        file = try JSONLinesFile(path: path)
        for (line, v) in try file.values() {
            guard let k = v["key"]?.stringValue, let r = v["reply"]?.stringValue else {
                throw FormatError.badHeader(path: path, reason: "line \(line) is not a cached reply ({\"key\", \"reply\"}); delete the file to start the cache afresh")
            }
            replies[k] = r
        }
    }

    public var count: Int { lock.lock(); defer { lock.unlock() }; return replies.count }

    public func reply(for key: String) -> String? { lock.lock(); defer { lock.unlock() }; return replies[key] }

    public func store(key: String, model: String, reply: String) throws {
        lock.lock(); replies[key] = reply; lock.unlock()
        try file.append(.object([("key", .string(key)), ("model", .string(model)), ("reply", .string(reply))]))
    }
}
