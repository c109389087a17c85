import FinchFormats
@testable import FinchTrain
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// GRPO's rewards: `--reward` specs, the built-in checkers, and the external command protocol under faults (a
/// program that crashes, hangs, or prints garbage is an error naming the reward and the sample, never a zero).
final class RewardTests: XCTestCase {
    func testSpecsParseWithWeights() throws {
        XCTAssertEqual(try RewardSpec(parsing: "answer-match").kind, .answerMatch)
        XCTAssertEqual(try RewardSpec(parsing: "answer-match").weight, 1)
        XCTAssertEqual(try RewardSpec(parsing: "answer-match=2.5").weight, 2.5)
        let f = try RewardSpec(parsing: "format:^<think>.*</think>(?=x)=0.5")
        XCTAssertEqual(f.kind, .format("^<think>.*</think>(?=x)"))
        XCTAssertEqual(f.weight, 0.5)
        XCTAssertEqual(try RewardSpec(parsing: "length:128=-1").kind, .length(128))
        XCTAssertEqual(try RewardSpec(parsing: "command:./score.sh --mode=strict").kind, .command("./score.sh --mode=strict"))
        for bad in ["accuracy", "format:", "format:([", "length:0", "length:x", "command: ", "json-schema:"] {
            XCTAssertThrowsError(try RewardSpec(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".contains(bad) && "\(error)".contains("answer-match, format:REGEX"), "\(error)")
            }
        }
    }

    func testAnswerMatch() throws {
        let r = AnswerMatchReward()
        func input(_ completion: String, _ answer: JSONValue?) -> RewardInput {
            RewardInput(prompt: "q", completion: completion, completionTokens: 5, record: answer.map { [("answer", $0)] } ?? [])
        }
        let scores = try r.scores([
            input("She pays 3 * 4 = 12.\n#### 1,200", .string("1200")),                       // commas
            input("So the answer is \\boxed{\\frac{1}{2}} then.", .string("\\frac{1}{2}")),     // nested braces
            input("#### $18.00", .string("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18")),         // GSM8K's own answer field
            input("#### 17", .string("#### 18")),
            input("I think it is 18.", .string("18")),                                           // no final answer given
            input("#### 18", .number("18")),
            input("#### 18", nil),                                                               // nothing to check against
            input("#### 5\n more text\n#### 6", .string("6")),                                   // the last one counts
        ])
        XCTAssertEqual(scores, [1, 1, 1, 0, 0, 1, nil, 1])
        XCTAssertEqual(AnswerMatchReward.finalAnswer(in: "x \\boxed{42"), nil)
    }

    func testFormatAndLength() throws {
        let f = try RewardSpec(parsing: "format:<think>.*</think>\\s*<answer>.*</answer>").make()
        let inputs = ["<think>a\nb</think>\n<answer>4</answer>", "<think>a</think><answer>4</answer> trailing", "<answer>4</answer>"]
            .map { RewardInput(prompt: "", completion: $0, completionTokens: 0) }
        XCTAssertEqual(try f.scores(inputs), [1, 0, 0], "the whole completion must match, across lines")
        let l = try RewardSpec(parsing: "length:10").make()
        XCTAssertEqual(try l.scores([5, 10, 15, 30].map { RewardInput(prompt: "", completion: "", completionTokens: $0) }), [0, 0, -0.5, -2])
    }

    func testJSONSchema() throws {
        let dir = NSTemporaryDirectory() + "finch-schema-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let schema = """
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["answer", "steps"],
             "properties": {"answer": {"type": "integer", "minimum": 0},
                            "steps": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 3},
                            "unit": {"enum": ["kg", "m"]}},
             "additionalProperties": false}
            """
        try schema.write(toFile: dir + "/s.json", atomically: true, encoding: .utf8)
        let r = try RewardSpec(parsing: "json-schema:\(dir)/s.json=0.5").make()
        let completions = [
            #"  {"answer": 12, "steps": ["a", "b"]}  "#,            // whitespace around it is fine
            #"{"answer": 12.0, "steps": [], "unit": "kg"}"#,         // 12.0 is an integer
            #"{"answer": 1.5, "steps": []}"#,                         // not an integer
            #"{"answer": -1, "steps": []}"#,                          // below the minimum
            #"{"answer": 3}"#,                                        // steps missing
            #"{"answer": 3, "steps": [""]}"#,                         // an empty step
            #"{"answer": 3, "steps": [], "note": "x"}"#,              // an extra property
            #"{"answer": 3, "steps": [], "unit": "lb"}"#,             // not in the enum
            #"The answer is {"answer": 3, "steps": []}"#,             // not JSON as a whole
        ].map { RewardInput(prompt: "", completion: $0, completionTokens: 0) }
        XCTAssertEqual(try r.scores(completions), [1, 1, 0, 0, 0, 0, 0, 0, 0])
        // What the validator does not implement is refused by name, with where it is.
        try ##"{"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}}"##.write(toFile: dir + "/ref.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RewardSpec(parsing: "json-schema:\(dir)/ref.json").make()) {
            XCTAssertTrue("\($0)".contains("'$ref' at #/properties/a is not implemented"), "\($0)")
        }
        XCTAssertThrowsError(try RewardSpec(parsing: "json-schema:\(dir)/missing.json").make()) {
            XCTAssertTrue("\($0)".contains("missing.json") && "\($0)".contains("cannot read"), "\($0)")
        }
        // oneOf / not.
        try #"{"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}], "not": {"const": 20}}"#
            .write(toFile: dir + "/one.json", atomically: true, encoding: .utf8)
        let one = try RewardSpec(parsing: "json-schema:\(dir)/one.json").make()
        XCTAssertEqual(try one.scores(["5", "12", "10.5", "20"].map { RewardInput(prompt: "", completion: $0, completionTokens: 0) }),
                       [1, 0, 1, 0], "12 matches both branches; 20 is excluded by not")
    }

    func testCommandProtocol() throws {
        let echo = try RewardSpec(parsing: """
            command:while IFS= read -r line; do case "$line" in *'"completion":"good'*) echo '{"reward": 1}';; *'"completion":"none'*) echo '{"reward": null}';; *) echo '{"reward": -0.25}';; esac; done
            """).make()
        let batch = ["good one", "bad one", "none at all"].map { RewardInput(prompt: "p", completion: $0, completionTokens: 3) }
        XCTAssertEqual(try echo.scores(batch), [1, -0.25, nil])
        XCTAssertEqual(try echo.scores(batch), [1, -0.25, nil], "the program keeps running between batches")
    }

    func testCommandFaultsAreErrorsNamingTheSample() throws {
        let two = ["a", "b"].map { RewardInput(prompt: "p", completion: $0, completionTokens: 1) }
        let cases: [(String, String, Int)] = [
            ("read -r l; echo '{\"reward\": 1}'; exit 3", "exited (status 3)", 1),           // crashes after one answer
            ("while read -r l; do echo hello; done", "answered 'hello'", 0),                     // garbage
            ("while read -r l; do echo '{\"reward\": \"high\"}'; done", "not a finite number", 0),
            ("sleep 30", "no answer within 1 s", 0),                                             // hangs
        ]
        for (cmd, why, sample) in cases {
            let r = try RewardSpec(parsing: "command:" + cmd).make(timeout: 1)
            XCTAssertThrowsError(try r.scores(two), cmd) { error in
                let e = error as? RewardError
                XCTAssertEqual(e?.sample, sample, "\(cmd): \(error)")
                XCTAssertTrue("\(error)".contains(why) && "\(error)".contains("command:" + cmd), "\(cmd): \(error)")
            }
        }
    }

    /// http:URL against a loopback server: the batch posted once, rewards in order (null kept), and an answer of
    /// the wrong length, a non-number entry (naming its sample), or an error status is a RewardError.
    func testHTTPRewardProtocolAndFaults() throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let r = try RewardSpec(parsing: "http:http://127.0.0.1:\(server.port)/score=2")
        XCTAssertEqual(r.weight, 2)
        let f = try r.make(timeout: 5)
        let batch = ["x", "yy", "zzz"].map { RewardInput(prompt: "p", completion: $0, completionTokens: $0.count, record: [("answer", .string("3"))]) }
        server.answer = (200, #"{"rewards": [0.5, null, -1]}"#)
        XCTAssertEqual(try f.scores(batch), [0.5, nil, -1])
        let posted = try XCTUnwrap(try JSONParser.parse(server.lastBody).objectValue)
        XCTAssertEqual(posted.first { $0.key == "completions" }?.value, .array(["x", "yy", "zzz"].map { .string($0) }))
        XCTAssertEqual(posted.first { $0.key == "records" }?.value.arrayValue?.count, 3)
        for (status, body, why, sample) in [(200, #"{"rewards": [1, 2]}"#, "2 rewards for 3 completions", nil),
                                            (200, #"{"rewards": [1, "a", 2]}"#, "not a finite number", 1),
                                            (404, "no such route", "HTTP 404", nil),
                                            (200, "not json", "no \"rewards\" list", nil)] as [(Int, String, String, Int?)] {
            server.answer = (status, body)
            XCTAssertThrowsError(try f.scores(batch), body) { error in
                XCTAssertEqual((error as? RewardError)?.sample, sample, "\(error)")
                XCTAssertTrue("\(error)".contains(why) && "\(error)".contains("http://127.0.0.1"), "\(error)")
            }
        }
        XCTAssertThrowsError(try RewardSpec(parsing: "http:ftp://x")) { XCTAssertTrue("\($0)".contains("not an http(s) URL"), "\($0)") }
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 answering every request with `answer` (status, body), closing each
/// connection after its answer; `lastBody` is the last request's body.
final class LoopbackServer: @unchecked Sendable {
    let fd: Int32
    let port: Int
    private let lock = NSLock()
    private var _answer: (Int, String) = (200, "{}"), _lastBody: [UInt8] = []
    private var thread: Thread?
    var answer: (Int, String) {
        get { lock.lock(); defer { lock.unlock() }; return _answer }
        set { lock.lock(); _answer = newValue; lock.unlock() }
    }
    var lastBody: [UInt8] { lock.lock(); defer { lock.unlock() }; return _lastBody }

    init() throws {
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, len) == 0 && listen(sock, 8) == 0 && getsockname(sock, $0, &len) == 0 }
        }
        guard ok else { throw NSError(domain: "LoopbackServer", code: Int(errno)) }
        fd = sock
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { self.serve() }   // holds the server until stop() ends the accept loop
        thread = t
        t.start()
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            var data: [UInt8] = [], buf = [UInt8](repeating: 0, count: 65536)
            var expected: Int?
            while true {
                let n = read(c, &buf, buf.count)
                if n <= 0 { break }
                data += buf[..<n]
                if expected == nil, let end = data.firstRange(of: Array("\r\n\r\n".utf8)) {
                    let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).lowercased()
                    let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                    expected = end.upperBound + length
                }
                if let e = expected, data.count >= e { break }
            }
            if let e = expected, let end = data.firstRange(of: Array("\r\n\r\n".utf8)) {
                lock.lock(); _lastBody = Array(data[end.upperBound..<e]); lock.unlock()
            }
            let (status, body) = answer
            let reply = "HTTP/1.1 \(status) X\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            _ = Array(reply.utf8).withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            close(c)
        }
    }
}
