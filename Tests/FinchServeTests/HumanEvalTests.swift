import FinchEval
import FinchFormats
@testable import FinchServe
import FinchTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// The human-evaluation session and its routes (the page itself is driven in Chromium by
/// Scripts/checks/serve/page_check.py eval, from e2e.sh).
final class HumanEvalTests: XCTestCase, @unchecked Sendable {
    var dir = ""
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("heval-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func session(log: String? = nil, third: Bool = false) throws -> HumanEvalSession {
        var sets = [try AnswerSet.load(spec: "base=" + Fixtures.path("eval/answers_base.jsonl")),
                    try AnswerSet.load(spec: "tuned=" + Fixtures.path("eval/answers_tuned.jsonl"))]
        if third { sets.append(try AnswerSet.load(spec: "copy=" + Fixtures.path("eval/answers_base.jsonl"))) }
        return try HumanEvalSession(systems: sets, questions: try JudgeQuestion.from(sets[0]), log: log ?? dir + "/ratings.jsonl", tournaments: 1)
    }

    func testTasksAreEveryQuestionAndPairInRandomSidesAndRatingsPersist() throws {
        let s = try session(third: true)
        XCTAssertEqual(s.progress.total, 9, "3 questions × 3 pairs")
        var seen = Set<String>(), sides = Set<String>()
        for _ in 0..<9 {
            let t = try XCTUnwrap(s.next())
            XCTAssertFalse(seen.contains(t.id), "a task handed to one rater is kept from the next")
            seen.insert(t.id); sides.insert(t.systemA)
            XCTAssertNotEqual(t.systemA, t.systemB)
        }
        XCTAssertGreaterThan(sides.count, 1, "sides are shuffled")
        // Rate three: A, B, tie; the log has three lines and a new session reads them back.
        let s2 = try session()
        var rated: [HumanEvalSession.Task] = []
        for choice in HumanEvalSession.Choice.allCases {
            let t = try XCTUnwrap(s2.next())
            try s2.rate(task: t.id, choice: choice, note: choice == .tie ? "both fine" : nil)
            rated.append(t)
        }
        XCTAssertEqual(s2.progress.done, 3)
        XCTAssertNil(s2.next(), "all three tasks rated")
        XCTAssertThrowsError(try s2.rate(task: rated[0].id, choice: .a, note: nil)) {
            XCTAssertEqual($0 as? HumanEvalSession.RatingError, .alreadyRated(rated[0].id))
        }
        XCTAssertThrowsError(try s2.rate(task: "nope", choice: .a, note: nil))
        let lines = try String(contentsOfFile: dir + "/ratings.jsonl", encoding: .utf8).split(separator: "\n").map { try JSONParser.parse(String($0)) }
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[0]["winner"]?.stringValue, rated[0].systemA)
        XCTAssertEqual(lines[1]["winner"]?.stringValue, rated[1].systemB)
        XCTAssertEqual(lines[2]["winner"]?.stringValue, "tie")
        XCTAssertEqual(lines[2]["note"]?.stringValue, "both fine")
        // Elo is the judge's code over the same matches.
        let matches = zip(rated, HumanEvalSession.Choice.allCases).map { t, c in
            Elo.Match(a: t.systemA, b: t.systemB, scoreA: c == .a ? 1 : c == .b ? 0 : 0.5)
        }
        XCTAssertEqual(s2.ratings(), Elo.ratings(matches, tournaments: 1, seed: 42))
        let reopened = try session()
        XCTAssertEqual(reopened.progress.done, 3)
        XCTAssertEqual(reopened.ratings(), s2.ratings())
    }

    /// A session stopped while writing a rating leaves half a line; the next session cuts it off,
    /// so its own rating starts a fresh line and the log stays readable.
    func testHalfWrittenRatingIsCutAndTheNextRatingStartsAFreshLine() throws {
        let s = try session()
        let first = try XCTUnwrap(s.next())
        try s.rate(task: first.id, choice: .a, note: nil)
        let log = dir + "/ratings.jsonl"
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: log))
        try h.seekToEnd(); try h.write(contentsOf: Data(#"{"task":"half"#.utf8)); try h.close()
        let s2 = try session()
        XCTAssertEqual(s2.progress.done, 1)
        let second = try XCTUnwrap(s2.next())
        try s2.rate(task: second.id, choice: .b, note: nil)
        let s3 = try session()
        XCTAssertEqual(s3.progress.done, 2, "both ratings read back; the half line is gone")
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").count, 2)
    }

    func testRoutesServeTasksRecordRatingsAndUpdateElo() async throws {
        var options = ServeOptions()
        options.humanEval = try session()
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let app = try FinchServer.application(state: ServerState(), options: options, logger: logger)
        try await app.test(.router) { client in
            let page = try await client.execute(uri: "/eval", method: .get)
            XCTAssertEqual(page.status, .ok)
            XCTAssertTrue(String(buffer: page.body).contains("Which answer is better?"))
            var elo: [JSONValue] = []
            for choice in ["A", "B", "tie"] {
                let next = try JSONParser.parse(Array(try await client.execute(uri: "/eval/next", method: .get).body.readableBytesView))
                let task = try XCTUnwrap(next["task"])
                XCTAssertNil(task["system_a"], "answers are anonymized")
                XCTAssertNotNil(task["answer_a"]?.stringValue)
                let body = JSONValue.object([("task_id", task["id"]!), ("choice", .string(choice)), ("note", .string("n"))]).serialized()
                let r = try await client.execute(uri: "/eval/rate", method: .post, body: ByteBuffer(string: body))
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                let standing = try JSONParser.parse(Array(r.body.readableBytesView))
                elo = standing["elo"]?.arrayValue ?? []
                if choice == "tie" {
                    XCTAssertEqual(standing["done"]?.intValue, 3)
                    let again = try await client.execute(uri: "/eval/rate", method: .post, body: ByteBuffer(string: body))
                    XCTAssertEqual(again.status, .conflict)
                }
            }
            XCTAssertEqual(elo.count, 2)
            let wins = elo.reduce(0) { $0 + ($1["wins"]?.intValue ?? 0) }
            XCTAssertEqual(wins, 2, "an A and a B verdict: two wins in all, one tie each")
            let done = try JSONParser.parse(Array(try await client.execute(uri: "/eval/next", method: .get).body.readableBytesView))
            XCTAssertEqual(done["task"], .null)
            let bad = try await client.execute(uri: "/eval/rate", method: .post, body: ByteBuffer(string: #"{"task_id": "x", "choice": "C"}"#))
            XCTAssertEqual(bad.status, .badRequest)
        }
        // Without a session the page explains how to start one and the routes say 404.
        let bare = try FinchServer.application(state: ServerState(), options: ServeOptions(), logger: logger)
        try await bare.test(.router) { client in
            let page = try await client.execute(uri: "/eval", method: .get)
            XCTAssertTrue(String(buffer: page.body).contains("--eval-answers"))
            let next = try await client.execute(uri: "/eval/next", method: .get)
            XCTAssertEqual(next.status, .notFound)
        }
    }
}
