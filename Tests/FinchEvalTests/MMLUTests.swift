import FinchEval
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTrain
import Foundation
import XCTest

/// MMLU on SmolLM2 against transformers (Scripts/fixtures/make_mmlu_reference.py) on 40 items
/// across subjects; the full 1531-item comparison is Scripts/checks/eval/mmlu_check.sh eval.
final class MMLUTests: XCTestCase {
    static let items = Fixtures.path("mmlu/mmlu_zero_shot_val_40.jsonl")

    func reference() throws -> JSONValue {
        try JSONParser.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("mmlu/reference_40.json")))))
    }

    /// Predictions equal; a differing one is allowed only where the reference's two best scores
    /// are within 1e-5 (a tie that rounding decides), and is reported. The accuracies are always
    /// checked: against the reference's when every prediction agrees, else against the reference's
    /// per-subject counts with the differing items scored as Finch predicted them.
    func check(_ report: MMLU.Report, _ ref: JSONValue, style: String, key: String, tolerance: Double) {
        let items = ref["items"]!.arrayValue!
        XCTAssertEqual(report.items.count, items.count)
        var differ = 0
        // The reference's correct / total per subject, with near-tie items taken as Finch scored them.
        var bySubject: [String: (correct: Int, total: Int)] = [:]
        for (got, want) in zip(report.items, items) {
            let w = want[style]!
            let scores = w[key]!.arrayValue!.map { $0.doubleValue! }
            for (a, b) in zip(got.scores, scores) { XCTAssertEqual(a, b, accuracy: tolerance, "\(style) \(got.subject)") }
            var prediction = w["prediction"]!.stringValue!
            if got.prediction != prediction {
                let top = scores.sorted(by: >)
                XCTAssertLessThan(top[0] - top[1], 1e-5, "\(style): \(got.subject) predicted \(got.prediction), reference \(prediction)")
                print("[mmlu \(style)] near-tie differs: \(got.subject) margin \(top[0] - top[1])")
                differ += 1
                prediction = got.prediction
            }
            let subject = want["subject"]!.stringValue!
            XCTAssertEqual(got.subject, subject)
            XCTAssertEqual(got.answer, want["answer"]!.stringValue!, subject)
            var s = bySubject[subject, default: (0, 0)]
            s.total += 1
            if prediction == want["answer"]!.stringValue! { s.correct += 1 }
            bySubject[subject] = s
        }
        let subjectMean = bySubject.values.map { Double($0.correct) / Double($0.total) }.reduce(0, +) / Double(bySubject.count)
        let itemMean = Double(bySubject.values.map(\.correct).reduce(0, +)) / Double(items.count)
        XCTAssertEqual(report.subjectMeanAccuracy, subjectMean, accuracy: 1e-12, style)
        XCTAssertEqual(report.itemAccuracy, itemMean, accuracy: 1e-12, style)
        if differ == 0 {
            let acc = ref["\(style)_accuracy"]!
            XCTAssertEqual(report.subjectMeanAccuracy, acc["subject_mean"]!.doubleValue!, accuracy: 1e-12)
            XCTAssertEqual(report.itemAccuracy, acc["item_mean"]!.doubleValue!, accuracy: 1e-12)
        }
    }

    func testQLoRAStyleMatchesTransformers() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let ref = try reference()
        XCTAssertEqual(try MMLU.letterIds(lm.tokenizer), ref["abcd_ids"]!.arrayValue!.map { $0.intValue! })
        let report = try MMLU.evaluate(lm, items: try MMLU.load(path: Self.items), style: .qlora)
        check(report, ref, style: "qlora", key: "scores", tolerance: 1e-3)
        for (got, want) in zip(report.items, ref["items"]!.arrayValue!) {
            XCTAssertEqual(got.promptTokens, want["qlora"]!["source_tokens"]!.intValue!)
            let l = want["qlora"]!["loss"]!.doubleValue!
            XCTAssertEqual(got.loss!, l, accuracy: 1e-4 * l)
        }
        XCTAssertEqual(report.loss!, ref["qlora_loss"]!.doubleValue!, accuracy: 1e-4 * report.loss!)
        print("[mmlu qlora] 40 items: subject mean \(report.subjectMeanAccuracy), \(report.itemsPerSecond) items/s")
    }

    func testHarnessStyleMatchesTransformers() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let report = try MMLU.evaluate(lm, items: try MMLU.load(path: Self.items), style: .harness)
        check(report, try reference(), style: "harness", key: "logliks", tolerance: 1e-3)
        XCTAssertNil(report.loss)
    }

    /// One item per pass or eight: the same scores (batching is not allowed to change answers).
    func testBatchingDoesNotChangeScores() throws {
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        let items = Array(try MMLU.load(path: Self.items).prefix(6))
        for style in MMLU.Style.allCases {
            let one = try MMLU.evaluate(lm, items: items, style: style, batchSize: 1)
            let six = try MMLU.evaluate(lm, items: items, style: style, batchSize: 6)
            XCTAssertEqual(one.items.map(\.prediction), six.items.map(\.prediction))
            for (a, b) in zip(one.items, six.items) {
                for (x, y) in zip(a.scores, b.scores) { XCTAssertEqual(x, y, accuracy: 1e-4) }
            }
        }
    }

    func testFilesAreReadAsQLoRAWritesThemAndBadItemsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mmlu-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let array = dir + "/val.json"
        try #"[{"subject": "x", "input": "Q?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", "output": "C"}]"#.write(toFile: array, atomically: true, encoding: .utf8)
        XCTAssertEqual(try MMLU.load(path: array), [MMLUItem(subject: "x", input: "Q?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", answer: "C")])
        let bad = dir + "/bad.jsonl"
        try "{\"subject\": \"x\", \"input\": \"Q\", \"output\": \"A\"}\n{\"subject\": \"x\", \"input\": \"Q\", \"output\": \"E\"}\n"
            .write(toFile: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MMLU.load(path: bad)) { XCTAssertTrue("\($0)".contains("bad.jsonl:2"), "\($0)") }
        try "{\"subject\": \"x\", \"question\": \"Q\", \"output\": \"A\"}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MMLU.load(path: bad)) { XCTAssertTrue("\($0)".contains("\"input\" is missing"), "\($0)") }
    }

    func testShotsComeFromTheSameSubjectAndNeverTheItemItself() throws {
        let header = "The following are multiple choice questions (with answers) about  x.\n\n"
        let items = (0..<3).map { MMLUItem(subject: "x", input: header + "Q\($0)\nAnswer:", answer: ["A", "B", "C"][$0]) }
            + [MMLUItem(subject: "y", input: header + "R\nAnswer:", answer: "D")]
        let shot = try MMLU.withShots(Array(items.prefix(3)), shots: 2)
        XCTAssertEqual(shot[0].input, header + "Q1\nAnswer: B\n\nQ2\nAnswer: C\n\nQ0\nAnswer:")
        XCTAssertEqual(shot[1].input, header + "Q0\nAnswer: A\n\nQ2\nAnswer: C\n\nQ1\nAnswer:")
        XCTAssertEqual(try MMLU.withShots(items, shots: 0), items)
        XCTAssertThrowsError(try MMLU.withShots(items, shots: 1)) { XCTAssertTrue("\($0)".contains("\"y\""), "\($0)") }
        let pooled = try MMLU.withShots([items[3]], shots: 1, pool: [MMLUItem(subject: "y", input: header + "S\nAnswer:", answer: "A")])
        XCTAssertEqual(pooled[0].input, header + "S\nAnswer: A\n\nR\nAnswer:")
    }

    func testSubjectMeanIsQLoRAsHeadlineAndTheChartDrawsEverySubject() {
        func r(_ s: String, _ ok: Bool) -> MMLU.ItemResult {
            MMLU.ItemResult(subject: s, answer: "A", prediction: ok ? "A" : "B", scores: [1, 0, 0, 0], loss: 1, promptTokens: 3)
        }
        // Subject a: 1/1, subject b: 1/3 → subject mean 2/3, item accuracy 2/4.
        let report = MMLU.Report(style: .qlora, items: [r("a", true), r("b", true), r("b", false), r("b", false)], seconds: 2)
        XCTAssertEqual(report.subjectMeanAccuracy, 2.0 / 3, accuracy: 1e-15)
        XCTAssertEqual(report.itemAccuracy, 0.5)
        XCTAssertEqual(report.itemsPerSecond, 2)
        XCTAssertEqual(report.subjects.map(\.subject), ["a", "b"])
        let svg = report.chartSVG(title: "t <&>")
        XCTAssertTrue(svg.contains("<title>a: 1/1</title>") && svg.contains("<title>b: 1/3</title>"))
        XCTAssertTrue(svg.contains("t &lt;&amp;&gt;"))
        let json = report.summaryJSON()
        XCTAssertEqual(json["per_subject"]?["b"]?["correct"]?.intValue, 1)
        XCTAssertEqual(report.predictionLines().split(separator: "\n").count, 4)
    }

    /// qlora's --do_mmlu_eval: a short run writes the accuracy into metrics.jsonl and loss.svg.
    func testTrainingWithMMLUEvalLogsAccuracy() throws {
        var c = TrainingConfig()
        c.model = try Fixtures.smolLM2()
        c.data = Fixtures.path("mmlu/mmlu_zero_shot_val_40.jsonl")   // any input-output file trains
        c.format = .inputOutput
        c.maxSteps = 2; c.batchSize = 2; c.loraR = 4; c.targetModules = ["q_proj", "v_proj"]; c.evalSteps = 1
        c.mmluEval = true; c.mmluData = Self.items; c.maxMMLUSamples = 8
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mmlu-run-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try TrainingRun.prepare(config: c)
        let trainer = try run.trainer(runDirectory: dir)
        trainer.evaluators.append(try XCTUnwrap(try MMLUTrainingEvaluator.forRun(c, model: run.model)))
        var evals: [EvalMetrics] = []
        try trainer.train { if case .evaluation(let e) = $0 { evals.append(e) } }
        XCTAssertEqual(evals.map(\.step), [1, 2])
        let lines = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONParser.parse(String($0)) }.filter { $0["eval_tokens"] != nil }
        XCTAssertEqual(lines.count, 2)
        for l in lines {
            let acc = try XCTUnwrap(l["mmlu_eval_accuracy"]?.doubleValue)
            XCTAssertTrue((0...1).contains(acc))
            XCTAssertNotNil(l["mmlu_loss"]?.doubleValue)
            XCTAssertNotNil(l["mmlu_eval_accuracy_abstract_algebra"]?.doubleValue)
            XCTAssertNil(l["eval_loss"], "no held-out split: no eval loss")
        }
        XCTAssertTrue(try String(contentsOfFile: dir + "/loss.svg", encoding: .utf8).contains("MMLU accuracy"))
        c.mmluData = nil
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("mmlu_data"), "\($0)") }
    }
}
