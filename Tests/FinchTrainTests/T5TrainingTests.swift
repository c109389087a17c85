import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
import FinchQuant
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// T5 through Finch's trainer against PEFT: 12 AdamW steps (lr 1e-2 constant, no decay, no
/// clipping, the same two-pair batch every step) from PEFT's own initialisation of a q/v adapter,
/// on both tiny T5s (Scripts/fixtures/make_tiny_t5.py). Steps 1-8 within 1e-4 relative.
final class T5TrainingTests: XCTestCase {
    struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
    struct Expected: Decodable { let curve: [Double]; let batch: Batch }

    func testTwelveStepLossCurveMatchesPEFT() throws {
        for variant in ["v1_1", "original"] {
            let d = Fixtures.path("tiny-t5/\(variant)")
            let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
            let ref = try SafeTensorsFile(path: d + "/expected.safetensors")
            let m = try T5Model.load(directory: d + "/hf")
            try m.loadAdapter(directory: d + "/peft")
            for p in m.trainableParameters() {
                let v = try ref.floats("curve.init.\(p.name)")
                XCTAssertEqual(v.count, p.value.count, p.name)
                p.value.pointer.update(from: v, count: v.count)
            }
            m.adapterParametersChanged()
            let start = Int32(m.config.startTokenId)
            let pairs = (0..<e.batch.input_ids.count).map { b in
                let src = zip(e.batch.input_ids[b], e.batch.attention_mask[b]).filter { $0.1 == 1 }.map(\.0)
                let target = e.batch.labels[b].filter { $0 != -100 }
                return TrainingSequence(tokens: [start] + target, labels: [-100] + target, source: src)
            }
            var c = TrainingConfig()
            c.learningRate = 1e-2; c.lrScheduler = .constant; c.maxGradNorm = 0; c.weightDecay = 0
            c.batchSize = 2; c.maxSteps = 12; c.loraDropout = 0; c.loraR = 4; c.loraAlpha = 8
            let summary = try Trainer(model: m, config: c, train: pairs).train()
            XCTAssertEqual(summary.losses.count, 12)
            var worst = 0.0
            for (k, (got, want)) in zip(summary.losses, e.curve).enumerated() {
                if k < 8 { worst = max(worst, abs(got - want) / want) }
                XCTAssertEqual(got, want, accuracy: (k < 8 ? 1e-4 : 5e-2) * want, "\(variant) step \(k + 1)")
            }
            XCTAssertLessThan(e.curve[11], e.curve[0] * 0.9, "the reference curve does not fall")
            print("[t5 \(variant)] 12-step AdamW curve \(e.curve[0]) -> \(e.curve[11]); steps 1-8 within \(worst) relative of PEFT")
        }
    }
}

/// QLoRA on T5 (NF4 + double quantization; `wo` kept in f32 as transformers keeps it): a run on
/// the tiny T5 v1.1 learns its pairs, and gradient checkpointing changes nothing.
final class T5QLoRATrainingTests: XCTestCase {
    func testQLoRATrainsAndCheckpointingIsExact() throws {
        let d = Fixtures.path("tiny-t5/v1_1")
        struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
        struct Expected: Decodable { let batch: Batch }
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
        let pairs = (0..<e.batch.input_ids.count).map { b in
            let src = zip(e.batch.input_ids[b], e.batch.attention_mask[b]).filter { $0.1 == 1 }.map(\.0)
            let target = e.batch.labels[b].filter { $0 != -100 }
            return TrainingSequence(tokens: [0] + target, labels: [-100] + target, source: src)
        }
        var runs: [[Double]] = []
        for checkpointing in [false, true] {
            let m = try T5Model.load(directory: d + "/hf", quantization: QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true))
            XCTAssertTrue(m.isQuantized)
            var c = TrainingConfig()
            c.learningRate = 5e-3; c.lrScheduler = .constant; c.batchSize = 2; c.maxSteps = 30; c.loraDropout = 0.1
            c.targetModules = ["all-linear"]; c.gradientCheckpointing = checkpointing
            runs.append(try Trainer(model: m, config: c, train: pairs).train().losses)
        }
        XCTAssertEqual(runs[0], runs[1], "gradient checkpointing changed the losses")
        XCTAssertLessThan(runs[0].last!, runs[0].first! * 0.5, "QLoRA did not learn: \(runs[0])")
        print("[t5 qlora] 30 steps all-linear r8, dropout 0.1: loss \(runs[0].first!) -> \(runs[0].last!)")
    }
}

/// T5 through the run preparation and the CLI: (source, target) pairs from the source/target
/// formats, errors for what does not apply, a Finch-saved adapter in PEFT's layout
/// (`SEQ_2_SEQ_LM`), merge → reload with the adapter's logits, and `finch train` / `generate` /
/// `chat` / `merge` on the tiny T5.
final class T5RunTests: XCTestCase {
    static let repo = Fixtures.repository
    let model = Fixtures.path("tiny-t5/v1_1/hf")
    let pairs = T5RunTests.repo.appendingPathComponent("Examples/brindlewick-pairs.jsonl").path
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5run-\(UUID().uuidString)").path

    override func tearDown() { try? FileManager.default.removeItem(atPath: scratch) }

    func testPreparedPairsAndRefusals() throws {
        var c = TrainingConfig()
        c.model = model; c.data = pairs; c.sourceMaxLen = 8
        let run = try TrainingRun.prepare(config: c)
        XCTAssertEqual(run.model.model.kind, .encoderDecoder)
        XCTAssertEqual(run.trainable.architecture, "t5")
        let tok = run.tokenizer
        XCTAssertEqual(run.train.count, 34)
        let first = run.train[0]
        let src = try XCTUnwrap(first.source)
        XCTAssertEqual(src.count, 8, "source cut to source_max_len, EOS kept")
        XCTAssertEqual(src.last, 1)
        XCTAssertEqual(Array(src.dropLast()), Array(tok.encode32("question: Where is Brindlewick?").prefix(7)))
        let target = tok.encode32("Brindlewick is a small harbor town on the island of Tessaly Rock, famous for its hand-blown glass lanterns.") + [1]
        XCTAssertEqual(first.tokens, [0] + target)
        XCTAssertEqual(first.labels, [-100] + target)

        var chat = c; chat.data = T5RunTests.repo.appendingPathComponent("Examples/brindlewick.jsonl").path
        XCTAssertThrowsError(try TrainingRun.prepare(config: chat)) { XCTAssertTrue("\($0)".contains("(source, target) pairs"), "\($0)") }
        var source = c; source.trainOnSource = true
        XCTAssertThrowsError(try TrainingRun.prepare(config: source)) { XCTAssertTrue("\($0)".contains("train_on_source"), "\($0)") }
        XCTAssertEqual(try LoadedModel.load(model).family.name, "t5", "one loader for every kind")
    }

    /// An adapter Finch saves for T5 is PEFT's file: the same tensors as PEFT saved, task type SEQ_2_SEQ_LM.
    func testSavedAdapterIsPEFTs() throws {
        let m = try T5Model.load(directory: model)
        try m.loadAdapter(directory: Fixtures.path("tiny-t5/v1_1/peft"))
        let out = scratch + "/adapter"
        try m.adapter(named: "default", config: m.adapterConfigs["default"]!).save(to: out)
        let ours = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        let theirs = try SafeTensorsFile(path: Fixtures.path("tiny-t5/v1_1/peft/adapter_model.safetensors"))
        XCTAssertEqual(Set(ours.tensorNames), Set(theirs.tensorNames))
        for n in theirs.tensorNames { XCTAssertEqual(try ours.floats(n), try theirs.floats(n), n) }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(config["task_type"] as? String, "SEQ_2_SEQ_LM")
        XCTAssertEqual(Set(config["target_modules"] as? [String] ?? []), ["q", "v"])
    }

    /// `saveHuggingFace` folds the active adapter in; the directory reloads (strictly) to the adapter's logits.
    func testMergedExportReloadsToTheAdapterLogits() throws {
        for variant in ["v1_1", "original"] {
            let m = try T5Model.load(directory: Fixtures.path("tiny-t5/\(variant)/hf"))
            try m.loadAdapter(directory: Fixtures.path("tiny-t5/\(variant)/peft"))
            let src = [5, 17, 40, 9, 21, 1], dec = [0, 33, 12, 7]
            let want = try m.logits(source: src, decoderInput: dec)
            let out = scratch + "/\(variant)"
            let r = try m.saveHuggingFace(to: out, tokenizer: nil, options: HuggingFaceExportOptions())
            XCTAssertEqual(r.adapters, ["default"])
            // Sharded as well (shards of at most 64 KB and an index), as the decoder families write them.
            let sharded = try m.saveHuggingFace(to: out + "-sharded", tokenizer: nil, options: HuggingFaceExportOptions(maxShardBytes: 65_536))
            XCTAssertTrue(sharded.files.contains("model.safetensors.index.json"), "\(sharded.files)")
            XCTAssertGreaterThan(sharded.files.filter { $0.hasSuffix(".safetensors") }.count, 1)
            XCTAssertEqual(sharded.tensorBytes, r.tensorBytes)
            for dir in [out, out + "-sharded"] {
                let back = try T5Model.load(directory: dir)
                XCTAssertEqual(back.config.scalesDecoderOutput, m.config.scalesDecoderOutput)
                let got = try back.logits(source: src, decoderInput: dec)
                XCTAssertLessThan(zip(got.joined(), want.joined()).map { abs($0 - $1) }.max()!, 1e-5, "\(variant) \(dir)")
            }
        }
    }

    func testCommandLine() throws {
        let finch = try Fixtures.finchBinary()
        func run(_ args: [String], input: String? = nil) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: finch); p.arguments = args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out; p.standardError = err
            let inp = Pipe()
            if input != nil { p.standardInput = inp }
            try p.run()
            if let input { inp.fileHandleForWriting.write(Data(input.utf8)); inp.fileHandleForWriting.closeFile() }
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "finch \(args.joined(separator: " ")): \(String(decoding: e, as: UTF8.self))")
            return String(decoding: o, as: UTF8.self)
        }
        let runDir = scratch + "/run", merged = scratch + "/merged"
        _ = try run(["train", "--model", model, "--data", pairs, "--output", runDir, "--max-steps", "12", "--batch-size", "4",
                     "--learning-rate", "5e-3", "--target-modules", "all-linear", "--quantize", "nf4", "--double-quant",
                     "--logging-steps", "1"])
        // Every step logged (logging_steps 1), and the run learned: the mean loss of the last three
        // steps is below the first three's (measured 5.27 -> 4.98; the run is seeded, so this is
        // deterministic; a third of the measured drop is asked).
        let steps = try String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]).flatMap { o -> (Int, Double)? in
                guard o["lr"] != nil, let s = o["step"] as? Int, let l = o["loss"] as? Double else { return nil }
                return (s, l)
            }
        }
        XCTAssertEqual(steps.map(\.0), Array(1...12))
        let losses = steps.map(\.1)
        let firstMean = losses.prefix(3).reduce(0, +) / 3, lastMean = losses.suffix(3).reduce(0, +) / 3
        XCTAssertGreaterThan(firstMean - lastMean, 0.1, "losses \(losses)")
        let prompt = "question: Where is Brindlewick?"
        let a = try run(["generate", "--model", model, "--adapter", runDir, "--max-new-tokens", "8", prompt])
        // Chat is the same loop once a template says how a conversation becomes the source (T5's
        // files carry none): the user's message closed by </s>, as generate encodes the prompt.
        let template = scratch + "/t5-chat.jinja"
        try "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ eos_token }}".write(toFile: template, atomically: true, encoding: .utf8)
        let b = try run(["chat", "--model", model, "--adapter", runDir, "--max-new-tokens", "8", "--chat-template", template],
                        input: prompt + "\n")
        XCTAssertEqual(a, b)
        let report = try run(["merge", "--model", model, "--adapter", runDir, "--output", merged])
        XCTAssertTrue(report.contains("exported, reloaded"), report)
        XCTAssertTrue(FileManager.default.fileExists(atPath: merged + "/model.safetensors"))
        print("[t5 cli] trained 12 QLoRA steps, generate == chat: \(a.debugDescription); merge: \(report.split(separator: "\n").last ?? "")")
    }
}

/// DoRA + rsLoRA + gradient checkpointing + LoRA dropout on T5 through the trainer, stopped at a
/// checkpoint and resumed: the same losses and the same adapter file as a run that never stopped.
final class T5ResumeTests: XCTestCase {
    func testResumeIsExactWithDoRAAndRSLoRA() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5resume-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-t5/original/hf")
        c.data = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples/brindlewick-pairs.jsonl").path
        c.useDoRA = true; c.useRSLoRA = true; c.gradientCheckpointing = true; c.loraDropout = 0.1
        c.batchSize = 4; c.maxSteps = 10; c.saveSteps = 5; c.learningRate = 3e-3; c.targetModules = ["all-linear"]
        let whole = try TrainingRun.prepare(config: c).trainer(runDirectory: scratch + "/whole").train()
        // The same run stopped after step 5 (its checkpoint), then resumed by a fresh process's worth of state.
        var first = c; first.maxSteps = 10
        let stopped = try TrainingRun.prepare(config: first).trainer(runDirectory: scratch + "/resumed")
        _ = try stopped.train { event in if case .step(let m, _) = event, m.step == 5 { stopped.requestStop() } }
        let resumed = try TrainingRun.prepare(config: c).trainer(runDirectory: scratch + "/resumed")
            .train(resumeFrom: scratch + "/resumed/checkpoint-5")
        XCTAssertEqual(resumed.losses, whole.losses)
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: scratch + "/whole/adapter_model.safetensors"))
                      == Data(contentsOf: URL(fileURLWithPath: scratch + "/resumed/adapter_model.safetensors")))
        XCTAssertLessThan(whole.losses.last!, whole.losses.first!)
    }
}
