import FinchCore
import FinchFormats
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// The settings table (`TrainingConfig.settings`) drives every route a setting takes: a run file,
/// the flags' overlay, validation, and the JSON of `train_config.json` and checkpoints.
final class TrainingSettingsTests: XCTestCase {
    func file(_ text: String) throws -> String {
        let p = NSTemporaryDirectory() + "finch-settings-\(UUID().uuidString).yaml"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    /// Every property is a setting once: keys, aliases and flags are unique, and the JSON has one key per setting.
    func testTableHasEachSettingOnce() {
        let keys = TrainingConfig.settings.map(\.key)
        XCTAssertEqual(Set(keys).count, keys.count)
        let spellings = TrainingConfig.settings.flatMap { [$0.key] + $0.aliases }
        XCTAssertEqual(Set(spellings).count, spellings.count, "a run-file spelling names two settings")
        let flags = TrainingConfig.settings.flatMap(\.flags)
        XCTAssertEqual(Set(flags).count, flags.count, "a flag names two settings")
        XCTAssertEqual(Set(TrainingConfig.settings.map(\.keyPath)).count, keys.count)
        XCTAssertTrue(TrainingConfig.settings.allSatisfy { !$0.help.isEmpty && !$0.flags.isEmpty })
        // Mirror counts the stored properties: each is in the table.
        XCTAssertEqual(Mirror(reflecting: TrainingConfig()).children.count, keys.count)
    }

    /// YAML → config: canonical keys, qlora/HF aliases, shorthands, enums by their other names, lists as text.
    func testRunFileSetsSettingsThroughAliases() throws {
        let c = try TrainingConfig.load(yamlAt: try file("""
            model_name_or_path: some/model
            r: 16
            lora_alpha: 32
            learning_rate: 2e-4
            lr_scheduler_type: constant_with_warmup
            optim: paged_adamw_32bit
            target_modules: q_proj, v_proj
            per_device_train_batch_size: 2
            num_train_epochs: 3
            max_steps: -1
            bnb_4bit_quant_type: fp4
            bits: 4
            bf16: true
            init_lora_weights: gaussian
            layers_to_transform: [0, 2]
            seed: 18446744073709551615
            """))
        XCTAssertEqual(c.model, "some/model")
        XCTAssertEqual(c.loraR, 16)
        XCTAssertEqual(c.loraAlpha, 32)
        XCTAssertEqual(c.learningRate, 2e-4)   // YAML 1.1 reads 2e-4 as text; a number setting takes it
        XCTAssertEqual(c.lrScheduler, .constant)
        XCTAssertEqual(c.optimizer, .pagedAdamW)
        XCTAssertEqual(c.targetModules, ["q_proj", "v_proj"])
        XCTAssertEqual(c.batchSize, 2)
        XCTAssertEqual(c.epochs, 3)
        XCTAssertNil(c.maxSteps)               // HF's -1 = not set
        XCTAssertEqual(c.quantize, .fp4)       // the file's quant type wins over bits: 4's nf4
        XCTAssertEqual(c.dtype, .bf16)
        XCTAssertEqual(c.initLoRAWeights, .gaussian)
        XCTAssertEqual(c.layersToTransform, [0, 2])
        XCTAssertEqual(c.seed, .max)
        let b = try TrainingConfig.load(yamlAt: try file("bits: 4\ninit_lora_weights: true\n"))
        XCTAssertEqual(b.quantize, .nf4)
        XCTAssertEqual(b.initLoRAWeights, .kaimingUniform)
    }

    /// An unknown key is refused by name, with its file and line and the settings that start alike.
    func testUnknownKeyIsRefusedByNameWithItsLine() throws {
        let p = try file("lora_r: 8\nlearning_rat: 1e-4\n")
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: p)) { e in
            guard case SettingError.unknownKey(let key, let place, let close) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "learning_rat")
            XCTAssertEqual(place.file, p)
            XCTAssertEqual(place.line, 2)
            XCTAssertEqual(close, ["learning_rate"])
            XCTAssertTrue("\(e)".hasPrefix("\(p):2:"), "\(e)")
        }
    }

    /// A value of the wrong kind names the setting, its line, what it takes and what it got.
    func testWrongKindIsRefusedWithWhatTheSettingTakes() throws {
        let p = try file("seed: 1\nlora_r: eight\n")
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: p)) { e in
            guard case SettingError.wrongType(let key, let place, let expected, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "lora_r")
            XCTAssertEqual(place.line, 2)
            XCTAssertEqual(expected, "an integer")
            XCTAssertTrue("\(e)".contains("'lora_r' should be an integer (got \"eight\")"), "\(e)")
        }
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try file("optimizer: sgd\n"))) { e in
            XCTAssertTrue("\(e)".contains("one of adamw, paged_adamw, adamw_8bit, paged_adamw_8bit"), "\(e)")
        }
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try file("init_lora_weights: false\n"))) { e in
            XCTAssertTrue("\(e)".contains("one of true, gaussian"), "\(e)")
        }
    }

    /// Validation comes from the table's checks, with the messages they had.
    func testValidationNamesTheSetting() {
        var c = TrainingConfig()
        c.loraR = 0
        XCTAssertThrowsError(try c.validate()) { e in
            XCTAssertEqual(e as? SettingError, .invalid(key: "lora_r", reason: "lora_r must be at least 1 (got 0)"))
            XCTAssertEqual("\(e)", "invalid training setting: lora_r must be at least 1 (got 0)")
        }
        c = TrainingConfig(); c.mmluEval = true
        XCTAssertThrowsError(try c.validate()) { e in XCTAssertTrue("\(e)".contains("mmlu_eval needs mmlu_data"), "\(e)") }
        c = TrainingConfig(); c.epochs = 0
        XCTAssertThrowsError(try c.validate())
        c.maxSteps = 5   // epochs is not used with max_steps
        XCTAssertNoThrow(try c.validate())
        XCTAssertNoThrow(try TrainingConfig().validate())
    }

    /// Precedence: defaults ← the resumed run ← the run file ← the flags.
    func testOverlayPrecedence() throws {
        var resumed = TrainingConfig()
        resumed.loraR = 4; resumed.learningRate = 1e-3; resumed.seed = 9; resumed.maxSteps = 100
        let runFile = try file("lora_r: 8\nlearning_rate: 5e-4\n")
        let c = try TrainingConfig.resolve(resumed: resumed, runFile: runFile, overrides: [
            .value(\.learningRate, 2e-4), .value(\.loraAlpha, nil), .flag(\.useDoRA, true), .flag(\.groupByLength, false),
            .text(\.targetModules, "q_proj,k_proj"), .flag(\.dtype, true, means: .bf16),
            .value(\.epochs, 2), .clear(\.maxSteps, when: true),
        ])
        XCTAssertEqual(c.seed, 9)                        // resumed, not overridden
        XCTAssertEqual(c.loraR, 8)                       // run file over the resumed run
        XCTAssertEqual(c.learningRate, 2e-4)             // flag over the run file
        XCTAssertEqual(c.loraAlpha, 16)                  // an absent flag changes nothing
        XCTAssertTrue(c.useDoRA)
        XCTAssertFalse(c.groupByLength)
        XCTAssertEqual(c.targetModules, ["q_proj", "k_proj"])
        XCTAssertEqual(c.dtype, .bf16)
        XCTAssertNil(c.maxSteps)                         // --epochs alone clears the resumed max_steps
        XCTAssertEqual(c.epochs, 2)
        // The flags are validated too.
        XCTAssertThrowsError(try TrainingConfig.resolve(resumed: nil, runFile: nil, overrides: [.value(\.batchSize, 0)])) { e in
            XCTAssertEqual(e as? SettingError, .invalid(key: "batch_size", reason: "batch_size must be at least 1 (got 0)"))
        }
    }

    /// Saved and read back (train_config.json, and inside a checkpoint's trainer_state.json): the same settings.
    func testSavedConfigRoundTrips() throws {
        var c = TrainingConfig()
        c.model = "m"; c.data = "d.jsonl"; c.format = .chat; c.quantize = .int8; c.int8Threshold = 5.5; c.computeDType = .bf16
        c.learningRate = 3e-4; c.lrScheduler = .cosine; c.adamEpsilon = 1e-8; c.seed = .max; c.maxSteps = 7
        c.initLoRAWeights = .gaussian; c.layersToTransform = [1]; c.targetModules = ["q_proj"]; c.optimizer = .adamw8bit
        let back = try JSONDecoder().decode(TrainingConfig.self, from: try c.jsonData())
        XCTAssertEqual(back, c)
        let text = String(decoding: try c.jsonData(), as: UTF8.self)
        XCTAssertFalse(text.contains("source_max_len"), "unset optional settings are left out: \(text)")
        let state = TrainerState(globalStep: 1, totalSteps: 2, sampler: .init(epoch: 0, position: 1), dataFingerprint: "x",
                                 trainExamples: 3, losses: [1], seconds: 1, config: c)
        XCTAssertEqual(try JSONDecoder().decode(TrainerState.self, from: try JSONEncoder().encode(state)), state)
    }

    /// A run saved by the code before the settings table resumes with the settings it had.
    func testConfigSavedByEarlierCodeReads() throws {
        let dir = Fixtures.path("train-config")
        let saved = try JSONDecoder().decode(TrainingConfig.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/train_config.json")))
        let state = try Checkpoint.readState(dir + "/checkpoint-2")
        XCTAssertEqual(state.config, saved)
        XCTAssertEqual(state.globalStep, 2)
        var expected = TrainingConfig()
        expected.model = "tiny-llama/hf"; expected.data = "data.jsonl"; expected.output = "run"
        expected.loraR = 4; expected.loraAlpha = 8; expected.learningRate = 3e-4; expected.targetModules = ["q_proj", "v_proj"]
        expected.lrScheduler = .cosine; expected.warmupRatio = 0.1; expected.saveTotalLimit = 2; expected.seed = 7
        expected.int8Threshold = 5.5; expected.layersToTransform = [0]; expected.maxSteps = 2; expected.saveSteps = 2
        expected.batchSize = 2; expected.useDoRA = true; expected.dtype = .bf16
        XCTAssertEqual(saved, expected)
        // And written again, it reads back the same.
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfig.self, from: try saved.jsonData()), saved)
    }
}
