import FinchFormats
import FinchModels
@testable import FinchTrain
import Foundation
import FinchTestSupport
import XCTest

/// `report_to: tensorboard` on the tiny model: every line of metrics.jsonl is in the event files under
/// the names transformers gives them, also after a run resumed from a checkpoint older than its last
/// logged step (TensorBoard drops the orphaned steps as metrics.jsonl does). TensorBoard's own reader
/// checks a CLI run the same way (Scripts/checks/integrations/tensorboard_check.py).
final class TensorBoardTrainingTests: XCTestCase {
    /// What TensorBoard shows of a run directory's event files: (tag, step) → value, read in file-name
    /// order, a session start at step S dropping every value logged before it at S or later.
    static func board(_ dir: String) throws -> [String: [Int: Float]] {
        let folder = dir + "/runs"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains("tfevents") }.sorted()
        var out: [String: [Int: Float]] = [:]
        for f in files {
            for e in try TensorBoardEventWriter.read(folder + "/" + f) {
                switch e.content {
                case .sessionStart: for t in out.keys { out[t] = out[t]!.filter { $0.key < Int(e.step) } }
                case .summary(let values):
                    for case .scalar(let tag, let v) in values { out[tag, default: [:]][Int(e.step)] = v }
                case .fileVersion: break
                }
            }
        }
        return out
    }

    /// metrics.jsonl as (tag, step) → value, named as transformers names its logs.
    static func metrics(_ dir: String) throws -> [String: [Int: Float]] {
        var out: [String: [Int: Float]] = [:]
        for line in try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let step = try XCTUnwrap(o["step"] as? Int), isEval = o["eval_tokens"] != nil
            for (k, v) in o where k != "step" {
                guard let x = (v as? NSNumber)?.doubleValue else { continue }
                let name = isEval ? (k == "eval_ppl" ? "perplexity" : k.hasPrefix("eval_") ? String(k.dropFirst(5)) : k)
                    : (k == "lr" ? "learning_rate" : k)
                out[(isEval ? "eval/" : "train/") + name, default: [:]][step] = Float(x)
            }
        }
        return out
    }

    func testEventFilesHoldEveryMetricAlsoAfterAResume() throws {
        let model = try TrainerTests.tinyModel()
        let data = TrainerTests.examples(17, vocab: model.vocabSize), held = TrainerTests.examples(4, vocab: model.vocabSize, seed: 9)
        let dir = NSTemporaryDirectory() + "finch-tb-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = TrainerTests.config(steps: 8)
        c.saveSteps = 4; c.evalSteps = 3; c.reportTo = ["tensorboard"]
        let t1 = try Trainer(model: model, config: c, train: data, eval: held, runDirectory: dir)
        var seen = 0
        _ = try t1.train { if case .step = $0 { seen += 1; if seen == 6 { t1.requestStop() } } }
        let first = try Self.board(dir)
        XCTAssertEqual(first["train/loss"]?.keys.sorted(), Array(1...6))
        XCTAssertEqual(first["eval/loss"]?.keys.sorted(), [3, 6])
        XCTAssertEqual(first, try Self.metrics(dir))

        // As if killed at step 6 with checkpoint-4 the last one kept: steps 5 and 6 are logged again.
        let t2 = try Trainer(model: try TrainerTests.tinyModel(), config: c, train: data, eval: held, runDirectory: dir)
        try t2.train(resumeFrom: dir + "/checkpoint-4")
        let board = try Self.board(dir), metrics = try Self.metrics(dir)
        XCTAssertEqual(board["train/loss"]?.keys.sorted(), Array(1...8))
        XCTAssertEqual(board["eval/perplexity"]?.keys.sorted(), [3, 6, 8])
        for tag in ["train/learning_rate", "train/grad_norm", "train/epoch", "train/tokens_per_s", "train/peak_rss_mib", "eval/loss", "eval/tokens"] {
            XCTAssertNotNil(board[tag], tag)
        }
        XCTAssertEqual(board, metrics)
        XCTAssertNotEqual(board["train/tokens_per_s"]?[5], first["train/tokens_per_s"]?[5], "step 5 should be the resumed run's")

        // The settings, as text "args", are train_config.json.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/runs").sorted()
        XCTAssertEqual(files.count, 2)
        let texts = try TensorBoardEventWriter.read(dir + "/runs/" + files[1]).compactMap { e -> String? in
            if case .summary(let v) = e.content, case .text("args", let t)? = v.first { return t }
            return nil
        }
        XCTAssertEqual(texts, [try String(contentsOfFile: dir + "/train_config.json", encoding: .utf8)])
    }

    func testOtherReportTargetsAreRefused() throws {
        var c = TrainingConfig()
        c.reportTo = ["tensorboard", "wandb"]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("report_to wandb is not supported"), "\($0)") }
        c.reportTo = ["none"]
        XCTAssertNoThrow(try c.validate())
        XCTAssertFalse(c.reportsToTensorBoard)
    }
}
