import FinchCore
import FinchModels
import FinchQuant
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// KTO around its objective: the loss's gradient against finite differences, the KL rotation,
/// exact resume and precomputed reference log-probabilities, a QLoRA base's reference pass, the
/// data errors that name the record, and the settings KTO refuses.
final class KTOTrainingTests: XCTestCase {
    static let data = Fixtures.path("kto/data/unpaired.jsonl")

    /// ∂loss/∂(each log-probability) of both loss types equals central differences of the loss (the
    /// KL estimate held fixed, as TRL detaches it); metrics of a batch with one kind of label.
    func testLossGradientsMatchFiniteDifferences() {
        let logps = [-12.5, -30.25, -7.0, -19.0], ref = [-13.0, -30.0, -7.5, -18.0], desirable = [true, false, true, false]
        for type in KTOLossType.allCases {
            let loss = KTOLoss(beta: 0.3, lossType: type, desirableWeight: 1.4, undesirableWeight: 0.7)
            let o = loss.evaluate(logps: logps, reference: ref, desirable: desirable, kl: 0.25)
            let h = 1e-6
            for i in logps.indices {
                var up = logps, down = logps
                up[i] += h; down[i] -= h
                let numeric = (loss.evaluate(logps: up, reference: ref, desirable: desirable, kl: 0.25).loss
                    - loss.evaluate(logps: down, reference: ref, desirable: desirable, kl: 0.25).loss) / (2 * h)
                XCTAssertEqual(o.gradient[i], numeric, accuracy: 1e-8 * max(1, abs(numeric)), "\(type) example \(i)")
            }
            XCTAssertEqual(o.metrics["rewards/margins"]?.mean ?? .nan, 0.3 * ((0.5 + 0.5) / 2 - (-0.25 - 1) / 2), accuracy: 1e-12)
        }
        let kto = KTOLoss(beta: 0.1)
        XCTAssertEqual(kto.klEstimate(policy: [-3, -5], reference: [-4, -4]), 0, "a mean of 0 stays 0")
        XCTAssertEqual(kto.klEstimate(policy: [-3, -5], reference: [-5, -5]), 1)
        XCTAssertEqual(kto.klEstimate(policy: [-6, -5], reference: [-5, -5]), 0, "clamped at 0")
        XCTAssertEqual(KTOLoss(beta: 0.1, lossType: .apoZeroUnpaired).klEstimate(policy: [-3], reference: [-9]), 0, "no KL")
        let onlyGood = kto.evaluate(logps: [-1, -2], reference: [-1, -2], desirable: [true, true], kl: 0)
        XCTAssertEqual(Set(onlyGood.metrics.keys), ["kl", "rewards/chosen", "logps/chosen"], "no rejected metrics without undesirable completions")
    }

    /// Each example's KL completion is the previous one's in its batch, the batch's first taking its last.
    func testKLCompletionsRotateWithinBatches() {
        var e = (0..<5).map { UnpairedExample(prompt: [1], completion: [Int32(10 + $0)], desirable: $0 % 2 == 0) }
        UnpairedExample.assignKLCompletions(&e, batchSize: 2)
        XCTAssertEqual(e.map(\.klCompletion), [[11], [10], [13], [12], [14]])
    }

    func config(steps: Int = 6) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-llama/hf")
        c.method = .kto; c.batchSize = 4; c.maxSteps = steps; c.learningRate = 5e-3; c.loraR = 4; c.seed = 3
        c.loggingSteps = 1
        return c
    }

    func examples(_ lm: LoadedModel, batchSize: Int = 4) throws -> [UnpairedExample] {
        var e = try PreferenceData.loadUnpaired(path: Self.data, tokenizer: lm.tokenizer, maxLength: 1024).unpaired
        UnpairedExample.assignKLCompletions(&e, batchSize: batchSize)
        return e
    }

    func losses(_ c: TrainingConfig, resumeFrom: String? = nil, run: String? = nil) throws -> [Double] {
        let lm = try LoadedModel.load(c.model)
        let t = try Trainer(model: lm.model, config: c, examples: .unpaired(try examples(lm)), runDirectory: run)
        var out: [Double] = []
        try t.train(resumeFrom: resumeFrom) { if case .step(let m, _) = $0 { out.append(m.loss) } }
        return out
    }

    /// A run stopped at a checkpoint and resumed computes the same losses as one that never stopped;
    /// precomputing the reference's log-probabilities changes nothing; a new adapter starts at 0.5.
    func testResumeIsExactAndPrecomputedReferenceIsTheSame() throws {
        _ = try Fixtures.required("kto")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-kto-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let whole = try losses(config())
        XCTAssertEqual(whole.count, 6)
        XCTAssertEqual(whole[0], 0.5, accuracy: 1e-12, "a new adapter starts as the reference: 1 − σ(0)")
        XCTAssertLessThan(whole[4], whole[0] - 0.005, "the loss falls")
        var c = config(steps: 6); c.saveSteps = 3
        _ = try losses(c, run: dir + "/a")
        let resumed = try losses(c, resumeFrom: dir + "/a/checkpoint-3", run: dir + "/a")
        XCTAssertEqual(resumed, Array(whole[3...]), "resumed steps equal the uninterrupted run's")
        var p = config(); p.precomputeRefLogProbs = true
        XCTAssertEqual(try losses(p), whole, "precomputed reference log-probabilities")
        var a = config(); a.lossType = "apo_zero_unpaired"
        XCTAssertNotEqual(try losses(a), whole, "apo_zero_unpaired is another objective")
    }

    /// QLoRA: the reference pass (adapters off) of an NF4 base equals the NF4 base's own forward, for
    /// the completions and the KL completions.
    func testQLoRAReferenceIsTheQuantizedBase() throws {
        _ = try Fixtures.required("kto")
        let q = QuantizationConfig(method: .nf4, blocksize: 64, doubleQuant: true)
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"), quantization: q)
        let plain = try LoadedModel.load(Fixtures.path("tiny-llama/hf"), quantization: q)
        var c = config(steps: 2); c.quantize = .nf4; c.doubleQuant = true
        let ex = try examples(lm)
        let t = try Trainer(model: lm.model, config: c, examples: .unpaired(ex))
        try t.train()
        let p = try XCTUnwrap(t.preference)
        let (seqs, kl) = p.sequences(ex)
        let ref = try p.referenceLogProbs(model: lm.model, examples: ex, sequences: seqs, kl: kl, trained: t.adapterName)
        XCTAssertEqual(ref.completions, try plain.model.sequenceLogProbs(seqs).sums)
        XCTAssertEqual(ref.kl, try plain.model.sequenceLogProbs(kl).sums)
        XCTAssertNotEqual(try lm.model.sequenceLogProbs(seqs).sums, ref.completions, "the trained adapter is active again")
    }

    func write(_ lines: [String]) throws -> String { try PreferenceReference.writeLines(lines, prefix: "kto") }

    func testDataErrorsNameTheRecord() throws {
        _ = try Fixtures.required("kto")
        let tok = try LoadedModel.load(Fixtures.path("tiny-llama/hf")).tokenizer
        let good = #"{"prompt": "A", "completion": " b", "label": true}"#
        let cases: [(String, String)] = [
            (#"{"prompt": "A", "completion": " b", "label": "yes"}"#, "key \"label\" is a string; it must be true"),
            (#"{"prompt": "A", "completion": " b"}"#, "missing key \"label\""),
            (#"{"completion": " b", "label": false}"#, "missing key \"prompt\""),
            (#"{"prompt": [{"role": "user", "content": "A"}], "completion": " b", "label": true}"#, "all be text or all be message lists"),
            (#"{"prompt": "A", "chosen": " b", "rejected": " c"}"#, "use one format per file"),
        ]
        for (record, message) in cases {
            let path = try write([good, record])
            defer { try? FileManager.default.removeItem(atPath: path) }
            XCTAssertThrowsError(try PreferenceData.loadUnpaired(path: path, tokenizer: tok, maxLength: 1024), message) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(path + ":2:") && text.contains(message), "\(message): \(text)")
            }
        }
        // A prompt that fills max_length is left out, as TRL filters it.
        let path = try write([good, #"{"prompt": "A much longer prompt than the others here", "completion": " b", "label": false}"#])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = try PreferenceData.loadUnpaired(path: path, tokenizer: tok, maxLength: 6)
        XCTAssertEqual(loaded.unpaired.count, 1); XCTAssertEqual(loaded.droppedCount, 1)
    }

    /// What TRL's KTOTrainer refuses or does not have is refused by name.
    func testSettingsKTORefuses() throws {
        let cases: [(String, (inout TrainingConfig) -> Void, String)] = [
            ("batch 1", { $0.batchSize = 1 }, "batch_size ≥ 2"),
            ("group_by_length", { $0.groupByLength = true }, "remove group_by_length"),
            ("reference_free", { $0.referenceFree = true }, "reference_free is not a setting of KTO"),
            ("keep_end", { $0.truncationMode = .keepEnd }, "truncation_mode keep_end is DPO's"),
            ("a DPO loss", { $0.lossType = "sigmoid" }, "loss_type sigmoid is not one of KTO's"),
            ("label smoothing", { $0.labelSmoothing = 0.1 }, "label_smoothing is not a setting of KTO"),
        ]
        for (label, change, message) in cases {
            var c = config(); change(&c)
            XCTAssertThrowsError(try c.validate(), label) { XCTAssertTrue("\($0)".contains(message), "\(label): \($0)") }
        }
        var dpo = TrainingConfig(); dpo.method = .dpo; dpo.desirableWeight = 2
        XCTAssertThrowsError(try dpo.validate()) { XCTAssertTrue("\($0)".contains("desirable_weight is a setting of KTO"), "\($0)") }
        var kto = TrainingConfig(); kto.method = .dpo; kto.lossType = "kto"
        XCTAssertThrowsError(try kto.validate()) { XCTAssertTrue("\($0)".contains("loss_type kto is not one of DPO's"), "\($0)") }
        var apo = config(); apo.batchSize = 1; apo.lossType = "apo_zero_unpaired"
        XCTAssertNoThrow(try apo.validate(), "apo_zero_unpaired has no KL estimate: batches of 1 are fine")
    }
}
