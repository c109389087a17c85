import ArgumentParser
@testable import finch
import FinchTestSupport
import FinchTrain
import Foundation
import XCTest

/// `finch train`'s flags → settings: the names and help come from `TrainingConfig.settings`, and the
/// overlay puts the flags over the run file and the resumed run.
final class TrainCommandTests: XCTestCase {
    /// The flags as users and scripts spell them (both qlora's and Finch's spellings).
    func testFlagsSetSettings() throws {
        let c = try Train.parse([
            "--model_name_or_path", "m", "--dataset", "d.jsonl", "--lora_r", "16", "--lora-alpha", "32", "--learning-rate", "2e-4",
            "--lr-scheduler", "cosine", "--target-modules", "q_proj, v_proj", "--use-dora", "--bf16", "--optim", "paged_adamw_32bit",
            "--init-lora-weights", "gaussian", "--per_device_train_batch_size", "2", "--model_max_length", "256",
            "--quant_type", "nf4", "--double_quant", "--llm_int8_threshold", "4", "--seed", "5", "--do_mmlu_eval", "--mmlu-data", "x",
        ]).resolvedConfig()
        XCTAssertEqual(c.model, "m"); XCTAssertEqual(c.data, "d.jsonl")
        XCTAssertEqual(c.loraR, 16); XCTAssertEqual(c.loraAlpha, 32); XCTAssertEqual(c.learningRate, 2e-4)
        XCTAssertEqual(c.lrScheduler, .cosine); XCTAssertEqual(c.targetModules, ["q_proj", "v_proj"])
        XCTAssertTrue(c.useDoRA); XCTAssertEqual(c.dtype, .bf16); XCTAssertEqual(c.optimizer, .pagedAdamW)
        XCTAssertEqual(c.initLoRAWeights, .gaussian); XCTAssertEqual(c.batchSize, 2); XCTAssertEqual(c.maxSeqLen, 256)
        XCTAssertEqual(c.quantize, .nf4); XCTAssertTrue(c.doubleQuant); XCTAssertEqual(c.int8Threshold, 4); XCTAssertEqual(c.seed, 5)
        XCTAssertTrue(c.mmluEval); XCTAssertEqual(c.mmluData, "x")
        XCTAssertEqual(try Train.parse(["--lr_scheduler_type", "constant_with_warmup"]).resolvedConfig().lrScheduler, .constant)
    }

    /// A closed set refuses other values and names the allowed ones; validation names the setting.
    func testBadFlagValuesAreRefused() {
        XCTAssertThrowsError(try Train.parse(["--lr-scheduler", "step"])) { e in
            let message = Train.message(for: e)
            XCTAssertTrue(message.contains("constant") && message.contains("cosine"), message)
        }
        XCTAssertThrowsError(try Train.parse(["--lora-r", "0"]).resolvedConfig()) { e in
            XCTAssertEqual("\(e)", "invalid training setting: lora_r must be at least 1 (got 0)")
        }
    }

    /// Each flag's names and help are its setting's.
    func testHelpComesFromTheSettingsTable() throws {
        let help = Train.helpMessage(columns: 10_000)
        let bound = try Train.parse([]).overrides.map(\.keyPath)
        for s in TrainingConfig.settings where bound.contains(s.keyPath) {
            for f in s.flags { XCTAssertTrue(help.contains("--\(f)"), "--\(f) missing from help") }
            XCTAssertTrue(help.contains(s.help), "help of \(s.key) missing")
        }
    }

    /// --resume (a checkpoint written by the code before the table) ← --config ← flags.
    func testResumeThenRunFileThenFlags() throws {
        let yaml = NSTemporaryDirectory() + "finch-cli-\(UUID().uuidString).yaml"
        try "lora_r: 8\nlearning_rate: 5.0e-4\nepochs: 2\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: yaml) }
        let checkpoint = Fixtures.path("train-config/checkpoint-2")
        let c = try Train.parse(["--resume", checkpoint, "--config", yaml, "--learning-rate", "1e-4", "--epochs", "3"]).resolvedConfig()
        XCTAssertEqual(c.seed, 7)               // the resumed run's
        XCTAssertEqual(c.lrScheduler, .cosine)  // the resumed run's
        XCTAssertEqual(c.loraR, 8)              // the run file's
        XCTAssertEqual(c.learningRate, 1e-4)    // the flag's
        XCTAssertEqual(c.epochs, 3)
        XCTAssertNil(c.maxSteps)                // --epochs alone clears the resumed run's max_steps
        let kept = try Train.parse(["--resume", checkpoint]).resolvedConfig()
        XCTAssertEqual(kept, try Checkpoint.readState(checkpoint).config)
    }
}
