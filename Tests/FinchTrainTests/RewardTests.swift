import FinchFormats
@testable import FinchTrain
import Foundation
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
        for bad in ["accuracy", "format:", "format:([", "length:0", "length:x", "command: "] {
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
}
