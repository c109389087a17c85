import FinchTestSupport
import Foundation
import XCTest

/// `finch train --method dpo|simpo|orpo|kto` and `finch eval preference` as a user runs them (the release binary):
/// a run file, TRL's metrics in metrics.jsonl, the resolved settings, `--dry-run`, the held-out
/// scores of the trained adapter, and the refusals (an encoder-decoder model; a preference setting
/// under sft).
final class DPOCommandTests: XCTestCase {
    func run(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Fixtures.finchBinary())
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out; p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testTrainEvaluateAndRefuse() throws {
        _ = try Fixtures.required("dpo")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dpo-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Fixtures.path("tiny-llama/hf"), data = Fixtures.path("dpo/data/conversational.jsonl")
        let yaml = """
            model: \(model)
            data: \(Fixtures.path("dpo/data/standard.jsonl"))
            eval_data: \(data)
            output: \(dir)/run
            method: dpo
            loss_type: robust
            label_smoothing: 0.1
            beta: 0.2
            batch_size: 2
            max_steps: 3
            learning_rate: 5.0e-3
            """
        try yaml.write(toFile: dir + "/run.yaml", atomically: true, encoding: .utf8)
        let dry = try run(["train", "--config", dir + "/run.yaml", "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.output)
        XCTAssertTrue(dry.output.contains("dry run:") && dry.output.contains("predicted peak memory"), dry.output)
        let train = try run(["train", "--config", dir + "/run.yaml"])
        XCTAssertEqual(train.status, 0, train.output)
        XCTAssertTrue(train.output.contains("dpo preference pairs") && train.output.contains("reference: the base model"), train.output)
        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let steps = lines.filter { $0["lr"] != nil }, evals = lines.filter { $0["eval_loss"] != nil }
        XCTAssertEqual(steps.count, 3)
        for key in ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
            XCTAssertNotNil(steps.last?[key], key)
            XCTAssertNotNil(evals.last?["eval_" + key], "eval_" + key)
        }
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/train_config.json"))) as? [String: Any])
        XCTAssertEqual(config["method"] as? String, "dpo"); XCTAssertEqual(config["loss_type"] as? String, "robust")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/adapter_model.safetensors"))
        let chart = try String(contentsOfFile: dir + "/run/loss.svg", encoding: .utf8)
        XCTAssertTrue(chart.contains("eval reward accuracy (right axis)"), "loss.svg plots the held-out reward accuracy")

        // The trained adapter on held-out pairs, against the base.
        let eval = try run(["eval", "preference", "--model", model, "--adapter", dir + "/run", "--data", data, "--beta", "0.2"])
        XCTAssertEqual(eval.status, 0, eval.output)
        let json = try XCTUnwrap(eval.output.split(separator: "\n").last.map(String.init))
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(summary["pairs"] as? Int, 2)
        let margin = try XCTUnwrap(summary["rewards/margins"] as? Double)
        XCTAssertTrue(margin.isFinite && margin != 0, "the adapter moved away from the base: \(margin)")

        // SimPO: no reference pass; ref_adapter refused by name.
        let simpo = try run(["train", "--model", model, "--method", "simpo", "--data", data, "--output", dir + "/simpo", "--max-steps", "2",
                             "--cpo-alpha", "0.5"])
        XCTAssertEqual(simpo.status, 0, simpo.output)
        XCTAssertTrue(simpo.output.contains("reference: none (simpo)"), simpo.output)
        let simpoMetrics = try String(contentsOfFile: dir + "/simpo/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(simpoMetrics.contains("\"nll_loss\"") && simpoMetrics.contains("\"rewards/margins\""), simpoMetrics)
        let orpo = try run(["train", "--model", model, "--method", "orpo", "--data", data, "--output", dir + "/orpo", "--max-steps", "2"])
        XCTAssertEqual(orpo.status, 0, orpo.output)
        XCTAssertTrue(orpo.output.contains("reference: none (orpo)"), orpo.output)
        let orpoMetrics = try String(contentsOfFile: dir + "/orpo/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(orpoMetrics.contains("\"log_odds_ratio\"") && orpoMetrics.contains("\"nll_loss\""), orpoMetrics)
        // KTO: unpaired examples (a held-out share evaluated), and pairs unpaired as TRL does, from a reference adapter.
        let kto = try run(["train", "--model", model, "--method", "kto", "--data", Fixtures.path("kto/data/unpaired.jsonl"), "--output", dir + "/kto",
                           "--max-steps", "2", "--batch-size", "3", "--eval-fraction", "0.25", "--desirable-weight", "1.2", "--logging-steps", "1"])
        XCTAssertEqual(kto.status, 0, kto.output)
        XCTAssertTrue(kto.output.contains("kto preference examples (text), 8 examples (4 desirable, 4 undesirable)")
                      && kto.output.contains("held out 2 examples"), kto.output)
        let ktoLines = try String(contentsOfFile: dir + "/kto/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertNotNil(ktoLines.first { $0["lr"] != nil }?["kl"], "\(ktoLines)")
        XCTAssertNotNil(ktoLines.first { $0["eval_loss"] != nil }?["eval_kl"], "\(ktoLines)")
        let ktoEval = try run(["eval", "preference", "--method", "kto", "--model", model, "--adapter", dir + "/kto",
                               "--data", Fixtures.path("kto/data/unpaired.jsonl"), "--batch-size", "4"])
        XCTAssertEqual(ktoEval.status, 0, ktoEval.output)
        let ktoSummary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(ktoEval.output.split(separator: "\n").last).utf8)) as? [String: Any])
        XCTAssertEqual(ktoSummary["examples"] as? Int, 8); XCTAssertEqual(ktoSummary["loss_type"] as? String, "kto")
        XCTAssertNotNil(ktoSummary["kl"]); XCTAssertNotNil(ktoSummary["rewards/margins"])
        let orpoEval = try run(["eval", "preference", "--method", "orpo", "--model", model, "--adapter", dir + "/orpo", "--data", data])
        XCTAssertEqual(orpoEval.status, 0, orpoEval.output)
        XCTAssertTrue(orpoEval.output.contains("\"reference\":null") && orpoEval.output.contains("\"log_odds_ratio\""), orpoEval.output)
        let ktoPairs = try run(["train", "--model", model, "--method", "kto", "--data", Fixtures.path("dpo/data/standard.jsonl"), "--output", dir + "/kto2",
                                "--max-steps", "1", "--ref-adapter", dir + "/run", "--loss-type", "apo_zero_unpaired"])
        XCTAssertEqual(ktoPairs.status, 0, ktoPairs.output)
        XCTAssertTrue(ktoPairs.output.contains("8 examples (4 desirable, 4 undesirable)") && ktoPairs.output.contains("reference: the adapter"), ktoPairs.output)
        let ktoBad = try run(["train", "--model", model, "--method", "kto", "--data", data, "--output", dir + "/kto3", "--loss-type", "sigmoid"])
        XCTAssertNotEqual(ktoBad.status, 0)
        XCTAssertTrue(ktoBad.output.contains("loss_type sigmoid is not one of KTO's"), ktoBad.output)

        let simpoRef = try run(["train", "--model", model, "--method", "simpo", "--data", data, "--ref-adapter", dir + "/run", "--output", dir + "/s2"])
        XCTAssertNotEqual(simpoRef.status, 0)
        XCTAssertTrue(simpoRef.output.contains("simpo has no reference model"), simpoRef.output)

        // Refusals, by name.
        let t5 = try run(["train", "--model", Fixtures.path("tiny-t5/v1_1/hf"), "--method", "dpo", "--data", data, "--output", dir + "/t5"])
        XCTAssertNotEqual(t5.status, 0)
        XCTAssertTrue(t5.output.contains("has no encoder-decoder path") && t5.output.contains("simpo and orpo train it"), t5.output)
        // ORPO trains T5 (the prompt into the encoder); max_completion_length is for encoder-decoder models only.
        let t5orpo = try run(["train", "--model", Fixtures.path("tiny-t5/v1_1/hf"), "--method", "orpo", "--data", Fixtures.path("dpo/data/standard.jsonl"),
                              "--output", dir + "/t5orpo", "--max-steps", "2", "--max-completion-length", "8", "--target-modules", "all-linear"])
        XCTAssertEqual(t5orpo.status, 0, t5orpo.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/t5orpo/adapter_model.safetensors"))
        let decoderCut = try run(["train", "--model", model, "--method", "orpo", "--data", data, "--output", dir + "/cut", "--max-completion-length", "8"])
        XCTAssertNotEqual(decoderCut.status, 0)
        XCTAssertTrue(decoderCut.output.contains("max_completion_length applies to encoder-decoder models"), decoderCut.output)
        let sft = try run(["train", "--model", model, "--data", data, "--ref-adapter", dir + "/run", "--output", dir + "/sft"])
        XCTAssertNotEqual(sft.status, 0)
        XCTAssertTrue(sft.output.contains("ref_adapter is a setting of preference training"), sft.output)
    }
}
