import FinchEval
import FinchFormats
import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// A judge that always answers the same verdict (a scripted stub).
final class ConstantJudge: PairwiseJudge {
    let verdict: Verdict
    init(_ v: Verdict) { verdict = v }
    func judge(_ cases: [JudgeCase]) throws -> [JudgeOutput] { cases.map { _ in JudgeOutput(verdict: verdict, text: "\(verdict.rawValue)") } }
}

/// A judge that reads the answers: the longer one is better, equal lengths tie.
final class LongerJudge: PairwiseJudge {
    func judge(_ cases: [JudgeCase]) throws -> [JudgeOutput] {
        cases.map { c in
            let v: Verdict = c.answer1.count > c.answer2.count ? .first : c.answer1.count < c.answer2.count ? .second : .tie
            return JudgeOutput(verdict: v, text: "reasons\n\(v.rawValue)")
        }
    }
}

final class JudgeTests: XCTestCase {
    static let base = Fixtures.path("eval/answers_base.jsonl"), tuned = Fixtures.path("eval/answers_tuned.jsonl")

    func systems() throws -> [AnswerSet] {
        [try AnswerSet.load(spec: "base=" + Self.base), try AnswerSet.load(spec: "tuned=" + Self.tuned)]
    }

    /// Hand computation: K = 32, both at 1000. A beats B: E = 0.5, A 1016, B 984. A beats B
    /// again: E_A = 1 / (1 + 10^(−32/400)) = 0.5459219, A = 1016 + 32 · 0.4540781 = 1030.5305.
    /// A tie between equals changes nothing.
    func testEloAgainstAHandComputation() {
        let once = Elo.play([Elo.Match(a: "A", b: "B", scoreA: 1)])
        XCTAssertEqual(once["A"]!, 1016, accuracy: 1e-9)
        XCTAssertEqual(once["B"]!, 984, accuracy: 1e-9)
        let twice = Elo.play([Elo.Match(a: "A", b: "B", scoreA: 1), Elo.Match(a: "B", b: "A", scoreA: 0)])
        XCTAssertEqual(Elo.expected(1016, 984), 0.5459219, accuracy: 1e-7)
        XCTAssertEqual(twice["A"]!, 1030.5305, accuracy: 1e-4)
        XCTAssertEqual(twice["B"]!, 969.4695, accuracy: 1e-4)
        XCTAssertEqual(Elo.play([Elo.Match(a: "A", b: "B", scoreA: 0.5)]), ["A": 1000, "B": 1000])
        // One tournament plays the matches as given.
        let r = Elo.ratings([Elo.Match(a: "A", b: "B", scoreA: 1), Elo.Match(a: "B", b: "A", scoreA: 0)], tournaments: 1)
        XCTAssertEqual(r.map(\.system), ["A", "B"])
        XCTAssertEqual(r[0].elo, 1030.5305, accuracy: 1e-4)
        XCTAssertEqual(r[0].wins, 2); XCTAssertEqual(r[1].losses, 2); XCTAssertEqual(r[0].spread, 0)
        // A win and a loss: the order decides (1001.47 or 998.53); over many orders the mean is 1000.
        let split = Elo.ratings([Elo.Match(a: "A", b: "B", scoreA: 1), Elo.Match(a: "A", b: "B", scoreA: 0)], tournaments: 4000, seed: 7)
        for s in split {
            XCTAssertEqual(s.elo, 1000, accuracy: 0.2)
            XCTAssertEqual(s.spread, 1.4695, accuracy: 5e-3)   // every order ends 1.4695 from 1000
        }
        XCTAssertEqual(Elo.ratings([Elo.Match(a: "A", b: "B", scoreA: 1)], tournaments: 10, seed: 3),
                       Elo.ratings([Elo.Match(a: "A", b: "B", scoreA: 1)], tournaments: 10, seed: 3), "seeded")
    }

    /// A judge that always says "1" prefers whatever is shown first: 100% position bias, and since
    /// the two orders never agree, no wins (every outcome a tie, Elo unmoved).
    func testAlwaysOneJudgeHasFullPositionBiasAndNoWins() throws {
        let report = try PairwiseComparison.run(systems: try systems(), questions: try JudgeQuestion.from(try systems()[0]),
                                                judge: ConstantJudge(.first), tournaments: 100)
        XCTAssertEqual(report.judgements.count, 6, "3 questions × 1 pair × 2 orders")
        XCTAssertEqual(report.positionBias, 1)
        XCTAssertEqual(report.firstPositionRate, 1)
        XCTAssertTrue(report.outcomes.allSatisfy { $0.winner == nil && $0.positionDriven })
        for r in report.ratings { XCTAssertEqual(r.elo, 1000, accuracy: 1e-9); XCTAssertEqual(r.ties, 3) }
        // Both orders of each question, each answer shown first once.
        XCTAssertEqual(report.judgements.map { "\($0.system1)>\($0.system2)" }, Array(repeating: ["base>tuned", "tuned>base"], count: 3).flatMap { $0 })
        let lines = report.judgementLines().split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        XCTAssertEqual(try JSONParser.parse(String(lines[0]))["preferred"]?.stringValue, "base")
        XCTAssertTrue(report.table.contains("position bias 100.0%"), report.table)
    }

    /// A judge that reads the answers agrees with itself in both orders: wins count, no position bias.
    func testConsistentJudgeWinsAndRatings() throws {
        let report = try PairwiseComparison.run(systems: try systems(), questions: try JudgeQuestion.from(try systems()[0]),
                                                judge: LongerJudge(), tournaments: 1)
        XCTAssertEqual(report.positionBias, 0)
        XCTAssertEqual(report.firstPositionRate, 0.5, accuracy: 1e-12)
        XCTAssertEqual(report.outcomes.map(\.winner), ["tuned", "tuned", "tuned"])
        XCTAssertEqual(report.ratings.map(\.system), ["tuned", "base"])
        // Three wins in a row from 1000 / 1000, by hand: 1016, 1030.5305, then + 32 · (1 − E(1030.53, 969.47)).
        let third = 1030.5305 + 32 * (1 - Elo.expected(1030.5305, 969.4695))
        XCTAssertEqual(report.ratings[0].elo, third, accuracy: 1e-3)
        XCTAssertEqual(report.ratings[0].wins, 3)
        let summary = report.summaryJSON()
        XCTAssertEqual(summary["elo"]?.arrayValue?.first?["system"]?.stringValue, "tuned")
    }

    func testVerdictLinesAreReadAsQLoRAReadsThem() {
        XCTAssertEqual(JudgePrompt.parseVerdict("Assistant 2 is more detailed.\n2"), .second)
        XCTAssertEqual(JudgePrompt.parseVerdict("Both fine.\n3.\n\n"), .tie)
        XCTAssertEqual(JudgePrompt.parseVerdict("1"), .first)
        XCTAssertNil(JudgePrompt.parseVerdict("I cannot decide"))
        XCTAssertNil(JudgePrompt.parseVerdict("4"))
        let prompt = JudgePrompt.user(JudgeCase(question: "Q?", category: "math", answer1: "x", answer2: "y"), explain: true)
        XCTAssertTrue(prompt.hasPrefix("[Question]\nQ?\n\n[The Start of Assistant 1's Answer]\nx\n\n[The End of Assistant 1's Answer]\n\n"
            + "[The Start of Assistant 2's Answer]\ny\n\n[The End of Assistant 2's Answer]\n\n[System]\n"), prompt)
        XCTAssertTrue(prompt.contains("Solve it yourself first"))
    }

    /// qlora's two question sets load as they are: Vicuna's 80 and OpenAssistant's 953 (markers stripped).
    func testQuestionFilesLoad() throws {
        let vicuna = try JudgeQuestion.load(path: try Fixtures.required("datasets/vicuna_questions.jsonl"))
        XCTAssertEqual(vicuna.count, 80)
        XCTAssertEqual(vicuna[0], JudgeQuestion(id: "1", text: "How can I improve my time management skills?", category: "generic"))
        XCTAssertEqual(Set(vicuna.compactMap(\.category)).isSuperset(of: ["coding", "math"]), true)
        let oa = try JudgeQuestion.load(path: try Fixtures.required("datasets/oa_questions.jsonl"))
        XCTAssertEqual(oa.count, 953)
        XCTAssertEqual(Set(oa.map(\.id)).count, 953, "message ids are unique")
        // One-turn transcripts lose their markers; conversations of several turns stay transcripts.
        let kept = oa.filter { $0.text.hasPrefix("### Human:") }
        XCTAssertTrue(kept.allSatisfy { $0.text.components(separatedBy: "### Human:").count > 2 })
        XCTAssertGreaterThan(oa.count - kept.count, 400)
    }

    func testMissingAnswersAndBadFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("judge-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"id\": 1, \"output\": \"a\"}\n".write(toFile: dir + "/short.jsonl", atomically: true, encoding: .utf8)
        let short = try AnswerSet.load(spec: "short=" + dir + "/short.jsonl")
        XCTAssertThrowsError(try PairwiseComparison.run(systems: [try systems()[0], short], questions: try JudgeQuestion.from(try systems()[0]),
                                                        judge: LongerJudge())) {
            XCTAssertEqual($0 as? EvalError, EvalError(item: "short", "no answer to question 2", advice: "generate answers for every question"))
            XCTAssertEqual("\($0)", "short: no answer to question 2; generate answers for every question")
        }
        try "{\"id\": 1}\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AnswerSet.load(spec: dir + "/bad.jsonl")) { XCTAssertTrue("\($0)".contains("bad.jsonl:1"), "\($0)") }
    }

    /// SmolLM2 as the judge (choice mode): a verdict for every case, from its logits for 1 / 2 / 3.
    func testModelJudgeGivesAVerdictPerCase() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let judge = ModelJudge(lm, mode: .choice)
        let cases = [JudgeCase(question: "What is 2 + 2?", answer1: "4", answer2: "5"),
                     JudgeCase(question: "What is 2 + 2?", answer1: "5", answer2: "4"),
                     JudgeCase(question: "Write a haiku.", category: "writing", answer1: "Leaves fall", answer2: "")]
        let out = try judge.judge(cases)
        XCTAssertEqual(out.count, 3)
        for o in out {
            XCTAssertNotNil(o.verdict)
            XCTAssertEqual(o.scores?.count, 3)
            XCTAssertEqual(o.text, String(o.verdict!.rawValue))
        }
        // Batched or one by one: the same verdicts.
        judge.batchSize = 1
        XCTAssertEqual(try judge.judge(cases).map(\.verdict), out.map(\.verdict))
    }
}
