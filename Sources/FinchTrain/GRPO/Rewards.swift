import FinchFormats
import FinchNet
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a reward function scores: one completion, the prompt it answers, and the data record it came from
/// (its fields, `answer` among them, are what checkers read).
public struct RewardInput: Sendable {
    public var prompt: String
    public var completion: String
    /// The completion's length in tokens.
    public var completionTokens: Int
    /// The record's fields as the data file gave them.
    public var record: [(key: String, value: JSONValue)]
    public init(prompt: String, completion: String, completionTokens: Int, record: [(key: String, value: JSONValue)] = []) {
        self.prompt = prompt; self.completion = completion; self.completionTokens = completionTokens; self.record = record
    }
    public func field(_ name: String) -> JSONValue? { record.first { $0.key == name }?.value }
}

/// Why a reward could not score: it names the reward, the sample and what to do. A reward that fails is an
/// error, never a zero.
public struct RewardError: Error, CustomStringConvertible, Sendable {
    public var reward: String
    public var sample: Int?
    public var reason: String
    public var description: String {
        "reward '\(reward)'" + (sample.map { " on sample \($0)" } ?? "") + ": \(reason)"
    }
}

/// A reward function of GRPO: a score per completion of a batch, nil where it cannot score one (a checker
/// with nothing to check against); the total of a completion is the weighted sum of its scores.
public protocol RewardFunction: AnyObject {
    /// The name TRL would log it under (`rewards/<name>/mean`).
    var name: String { get }
    func scores(_ batch: [RewardInput]) throws -> [Double?]
}

/// `--reward NAME[=WEIGHT]` (YAML `rewards:`): the reward and its weight in the total (default 1).
///   answer-match       1 when the completion's final answer (`#### N` as GSM8K writes it, or `\boxed{N}`)
///                      equals the record's `answer` (its own final answer when it has one), numbers compared
///                      after normalization (`1,000` = `1000.0`, `$5` = `5`); 0 otherwise; nil without `answer`
///   format:REGEX       1 when the whole completion matches REGEX (`.` matches newlines), else 0
///   json-schema:FILE   1 when the whole completion is JSON the schema accepts, else 0 (`JSONSchemaReward`)
///   length:N           0 up to N tokens, −(tokens − N) / N past them
///   command:CMD        an external program (run by /bin/sh -c CMD, kept running) that reads one JSON line per
///                      completion on stdin — {"prompt", "completion", "completion_tokens", "record"} — and
///                      writes one line back: {"reward": number or null}
///   http:URL           a reward model served anywhere: one POST per batch of
///                      {"prompts", "completions", "completion_tokens", "records"} (lists, one entry per completion),
///                      answered by {"rewards": [number or null, …]} of the same length
public struct RewardSpec: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case answerMatch
        case format(String)
        case length(Int)
        case command(String)
        case http(String)
        case jsonSchema(String)
    }
    public var kind: Kind
    public var weight: Double
    /// The text it was given (its name in logs and errors).
    public var text: String

    public static let usage = "answer-match, format:REGEX, json-schema:FILE, length:N, command:CMD or http:URL, each optionally =WEIGHT"

    /// Parses `NAME[=WEIGHT]`; the weight is the text after the last `=` when that is a number (a regex or a
    /// command may hold `=` of its own).
    public init(parsing text: String) throws {
        var body = text, weight = 1.0
        if let eq = text.lastIndex(of: "="), let w = Double(text[text.index(after: eq)...]), w.isFinite {
            body = String(text[..<eq]); weight = w
        }
        func fail(_ why: String) -> RewardError { RewardError(reward: text, sample: nil, reason: "\(why); a reward is \(Self.usage)") }
        if body == "answer-match" {
            kind = .answerMatch
        } else if body.hasPrefix("format:") {
            let pattern = String(body.dropFirst("format:".count))
            guard !pattern.isEmpty else { throw fail("format: needs a regular expression") }
            do { _ = try NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators]) } catch {
                throw fail("'\(pattern)' is not a regular expression (\(error.localizedDescription))")
            }
            kind = .format(pattern)
        } else if body.hasPrefix("json-schema:") {
            let file = String(body.dropFirst("json-schema:".count))
            guard !file.isEmpty else { throw fail("json-schema: needs a schema file") }
            kind = .jsonSchema(file)
        } else if body.hasPrefix("length:") {
            guard let n = Int(body.dropFirst("length:".count)), n > 0 else { throw fail("length: needs a positive number of tokens") }
            kind = .length(n)
        } else if body.hasPrefix("command:") {
            let cmd = String(body.dropFirst("command:".count))
            guard !cmd.trimmingCharacters(in: .whitespaces).isEmpty else { throw fail("command: needs a command") }
            kind = .command(cmd)
        } else if body.hasPrefix("http:") || body.hasPrefix("https:") {
            let url = body.hasPrefix("http:") && !body.hasPrefix("http://") ? String(body.dropFirst("http:".count)) : body
            guard let u = URL(string: url), ["http", "https"].contains(u.scheme ?? ""), u.host != nil else {
                throw fail("'\(url)' is not an http(s) URL")
            }
            kind = .http(url)
        } else {
            throw fail("unknown reward '\(body)'")
        }
        self.weight = weight
        self.text = text
    }

    /// The reward function this names (a command is started here and stopped when the function is released).
    public func make(timeout: TimeInterval = 120) throws -> any RewardFunction {
        switch kind {
        case .answerMatch: return AnswerMatchReward()
        case .format(let p): return try FormatReward(pattern: p, name: "format")
        case .length(let n): return LengthReward(limit: n)
        case .command(let c): return try CommandReward(command: c, name: "command", timeout: timeout)
        case .http(let u): return HTTPReward(url: u, name: "http", timeout: timeout)
        case .jsonSchema(let f): return try JSONSchemaReward(path: f)
        }
    }
}

/// answer-match (see `RewardSpec`).
public final class AnswerMatchReward: RewardFunction {
    public let name = "answer_match"
    public init() {}

    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        batch.map { input in
            guard let expected = input.field("answer") else { return nil }
            let text: String
            switch expected {
            case .string(let s): text = s
            case .number(let n): text = n
            default: return nil
            }
            guard let got = Self.finalAnswer(in: input.completion) else { return 0 }
            return Self.same(got, Self.finalAnswer(in: text) ?? text) ? 1 : 0
        }
    }

    /// The last `#### …` line's answer, or else the last `\boxed{…}`'s content (braces balanced); nil when neither.
    public static func finalAnswer(in text: String) -> String? {
        if let r = text.range(of: "####", options: .backwards) {
            let rest = text[r.upperBound...].split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let answer = rest.trimmingCharacters(in: .whitespaces)
            if !answer.isEmpty { return answer }
        }
        guard let r = text.range(of: "\\boxed{", options: .backwards) else { return nil }
        var depth = 1, end = r.upperBound
        while end < text.endIndex {
            let c = text[end]
            if c == "{" { depth += 1 } else if c == "}" { depth -= 1; if depth == 0 { break } }
            end = text.index(after: end)
        }
        guard depth == 0 else { return nil }
        return text[r.upperBound..<end].trimmingCharacters(in: .whitespaces)
    }

    /// Numbers equal after normalization (commas, currency and percent signs, a trailing period dropped); other
    /// answers equal as trimmed text.
    public static func same(_ a: String, _ b: String) -> Bool {
        func normalized(_ s: String) -> String {
            var t = s.trimmingCharacters(in: .whitespacesAndNewlines)
            for junk in [",", "$", "%", "€", "£"] { t = t.replacingOccurrences(of: junk, with: "") }
            if t.hasSuffix(".") { t.removeLast() }
            return t.trimmingCharacters(in: .whitespaces)
        }
        let x = normalized(a), y = normalized(b)
        if let p = Double(x), let q = Double(y) { return p == q || abs(p - q) <= 1e-9 * max(abs(p), abs(q)) }
        return x == y
    }
}

/// format:REGEX (see `RewardSpec`).
public final class FormatReward: RewardFunction {
    public let name: String
    let regex: NSRegularExpression
    public init(pattern: String, name: String) throws {
        regex = try NSRegularExpression(pattern: "\\A(?:\(pattern))\\z", options: [.dotMatchesLineSeparators])
        self.name = name
    }
    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        batch.map { input in
            let s = input.completion
            return regex.firstMatch(in: s, range: NSRange(s.startIndex..<s.endIndex, in: s)) == nil ? 0 : 1
        }
    }
}

/// length:N (see `RewardSpec`).
public final class LengthReward: RewardFunction {
    public let name = "length"
    let limit: Int
    public init(limit: Int) { self.limit = limit }
    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        batch.map { -Double(max(0, $0.completionTokens - limit)) / Double(limit) }
    }
}

/// command:CMD (see `RewardSpec`): one process for the run, one JSON line each way per completion, each answer
/// awaited at most `timeout` seconds. Its exit, a timeout, or a line that is not {"reward": number or null} is a
/// `RewardError` naming the sample; the process's stderr goes to Finch's.
public final class CommandReward: RewardFunction {
    public let name: String
    let command: String
    let timeout: TimeInterval
    let process = Process()
    let input = Pipe(), output = Pipe()
    var pending: [UInt8] = []

    public init(command: String, name: String, timeout: TimeInterval) throws {
        self.command = command; self.name = name; self.timeout = timeout
        signal(SIGPIPE, SIG_IGN)   // a program that exits is an error of `scores`, not a signal
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch {
            throw RewardError(reward: "command:\(command)", sample: nil, reason: "could not start /bin/sh -c '\(command)': \(error)")
        }
    }

    /// Stops the program: its stdin closed, then SIGTERM, then after half a second SIGKILL, to it and to its
    /// process group (what the shell started for it).
    deinit {
        try? input.fileHandleForWriting.close()
        let pid = process.processIdentifier
        guard process.isRunning, pid > 0 else { return }
        for sig in [SIGTERM, SIGKILL] {
            kill(-pid, sig); kill(pid, sig)
            for _ in 0..<50 where process.isRunning { usleep(10_000) }
            if !process.isRunning { break }
        }
        process.waitUntilExit()
    }

    func fail(_ sample: Int, _ why: String) -> RewardError {
        RewardError(reward: "command:\(command)", sample: sample,
                    reason: why + "; the program reads one JSON line per completion and writes one line back, {\"reward\": number or null}")
    }

    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        try batch.enumerated().map { i, x in
            let line = JSONValue.object([("prompt", .string(x.prompt)), ("completion", .string(x.completion)),
                                         ("completion_tokens", .number(String(x.completionTokens))),
                                         ("record", .object(x.record))]).serialized() + "\n"
            try write(Array(line.utf8), sample: i)
            let answer = try readLine(sample: i)
            guard let v = try? JSONParser.parse(answer), let members = v.objectValue,
                  let reward = members.first(where: { $0.key == "reward" })?.value else {
                throw fail(i, "it answered '\(answer.prefix(200))', not a JSON object with \"reward\"")
            }
            if reward.isNull { return nil }
            guard let r = reward.doubleValue, r.isFinite else { throw fail(i, "its reward \(reward.serialized()) is not a finite number or null") }
            return r
        }
    }

    func write(_ bytes: [UInt8], sample: Int) throws {
        let fd = input.fileHandleForWriting.fileDescriptor
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw fail(sample, exitedReason()) }
            off += n
        }
    }

    func readLine(sample: Int) throws -> String {
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw fail(sample, "no answer within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min(left, 3600) * 1000))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw fail(sample, exitedReason()) }
            pending += chunk[..<n]
        }
    }

    func exitedReason() -> String {
        process.waitUntilExit()
        return "the program exited (status \(process.terminationStatus)) before answering"
    }
}

/// http:URL (see `RewardSpec`): one POST per batch, retried on 429 / 5xx / a failed connection as every HTTP call
/// of Finch is; an answer that is not a list of as many rewards is a `RewardError` (naming the sample whose entry
/// is not a number or null).
public final class HTTPReward: RewardFunction {
    public let name: String
    let url: String
    let timeout: TimeInterval
    public init(url: String, name: String, timeout: TimeInterval) { self.url = url; self.name = name; self.timeout = timeout }

    public func scores(_ batch: [RewardInput]) throws -> [Double?] {
        func fail(_ sample: Int?, _ why: String) -> RewardError {
            RewardError(reward: "http:\(url)", sample: sample,
                        reason: why + "; the server takes {\"prompts\", \"completions\", \"completion_tokens\", \"records\"} and answers {\"rewards\": [number or null, …]}")
        }
        let body = JSONValue.object([
            ("prompts", .array(batch.map { .string($0.prompt) })), ("completions", .array(batch.map { .string($0.completion) })),
            ("completion_tokens", .array(batch.map { .number(String($0.completionTokens)) })),
            ("records", .array(batch.map { .object($0.record) })),
        ]).serialized()
        let (url, timeout) = (self.url, self.timeout)
        let answer: HTTPAnswer
        do {
            answer = try HTTP.wait {
                try await HTTP.send(method: .POST, url: url, headers: [("Content-Type", "application/json")], body: Array(body.utf8),
                                    timeout: timeout, policy: RetryPolicy(attempts: 3))
            }
        } catch { throw fail(nil, "\(error)") }
        guard answer.status == 200 else { throw fail(nil, "HTTP \(answer.status): \(answer.text.prefix(200))") }
        guard let v = try? JSONParser.parse(answer.body), let rewards = v.objectValue?.first(where: { $0.key == "rewards" })?.value.arrayValue else {
            throw fail(nil, "the answer '\(answer.text.prefix(200))' has no \"rewards\" list")
        }
        guard rewards.count == batch.count else { throw fail(nil, "\(rewards.count) rewards for \(batch.count) completions") }
        return try rewards.enumerated().map { i, r in
            if r.isNull { return nil }
            guard let x = r.doubleValue, x.isFinite else { throw fail(i, "its reward \(r.serialized()) is not a finite number or null") }
            return x
        }
    }
}
