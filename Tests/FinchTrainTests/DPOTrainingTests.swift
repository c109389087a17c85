import FinchCore
import FinchModels
import FinchQuant
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Preference training around the objective: the loss's gradient against finite differences,
/// exact resume, precomputed reference log-probabilities, a QLoRA base's reference pass, and the
/// data errors that name the record.
final class DPOTrainingTests: XCTestCase {
    static let data = Fixtures.path("dpo/data/standard.jsonl")

    /// ∂loss/∂(each log-probability) of every loss type equals central differences of the loss.
    func testLossGradientsMatchFiniteDifferences() {
        let s = PairLogProbs(chosen: [-12.5, -30.25, -7.0], rejected: [-14.0, -29.5, -9.75], referenceChosen: [-13.0, -30.0, -7.5],
                             referenceRejected: [-13.5, -29.0, -9.0], chosenTokens: [5, 9, 3], rejectedTokens: [6, 8, 4])
        for type in DPOLossType.allCases {
            let loss = DPOLoss(beta: 0.3, lossType: type, labelSmoothing: type == .robust || type == .exoPair ? 0.2 : 0)
            let o = loss.evaluate(s)
            let h = 1e-6
            for i in 0..<s.count {
                for side in 0..<2 {
                    var up = s, down = s
                    if side == 0 { up.chosen[i] += h; down.chosen[i] -= h } else { up.rejected[i] += h; down.rejected[i] -= h }
                    let numeric = (loss.evaluate(up).loss - loss.evaluate(down).loss) / (2 * h)
                    let analytic = side == 0 ? o.dChosen[i] : o.dRejected[i]
                    XCTAssertEqual(analytic, numeric, accuracy: 1e-7 * max(1, abs(numeric)), "\(type) pair \(i) side \(side)")
                }
            }
        }
        // Hinge past its margin and sigmoid far out: no gradient, no overflow.
        let far = PairLogProbs(chosen: [0], rejected: [-1e4], referenceChosen: [0], referenceRejected: [0], chosenTokens: [1], rejectedTokens: [1])
        XCTAssertEqual(DPOLoss(lossType: .hinge).evaluate(far).dChosen, [0])
        let sig = DPOLoss(lossType: .sigmoid).evaluate(far)
        XCTAssertTrue(sig.loss.isFinite && sig.loss >= 0 && sig.dChosen[0].isFinite)
    }

    func config(steps: Int = 6) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-llama/hf")
        c.method = .dpo; c.batchSize = 2; c.maxSteps = steps; c.learningRate = 5e-3; c.loraR = 4; c.seed = 3
        c.loggingSteps = 1
        return c
    }

    func pairs(_ lm: LoadedModel) throws -> [PreferencePair] {
        try PreferenceData.load(path: Self.data, tokenizer: lm.tokenizer, maxLength: 1024, truncation: .keepStart).pairs
    }

    func losses(_ c: TrainingConfig, resumeFrom: String? = nil, run: String? = nil) throws -> [Double] {
        let lm = try LoadedModel.load(c.model)
        let t = try Trainer(model: lm.model, config: c, pairs: try pairs(lm), runDirectory: run)
        var out: [Double] = []
        try t.train(resumeFrom: resumeFrom) { if case .step(let m, _) = $0 { out.append(m.loss) } }
        return out
    }

    /// A run stopped at a checkpoint and resumed computes the same losses as one that never stopped;
    /// precomputing the reference's log-probabilities changes nothing.
    func testResumeIsExactAndPrecomputedReferenceIsTheSame() throws {
        _ = try Fixtures.required("dpo")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dpo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let whole = try losses(config())
        XCTAssertEqual(whole.count, 6)
        XCTAssertEqual(whole[0], log(2), accuracy: 1e-9, "a new adapter starts as the reference")
        XCTAssertLessThan(whole[5], whole[0] - 0.05, "the loss falls")
        var c = config(steps: 6); c.saveSteps = 3
        _ = try losses(c, run: dir + "/a")
        let resumed = try losses(c, resumeFrom: dir + "/a/checkpoint-3", run: dir + "/a")
        XCTAssertEqual(resumed, Array(whole[3...]), "resumed steps equal the uninterrupted run's")
        var p = config(); p.precomputeRefLogProbs = true
        XCTAssertEqual(try losses(p), whole, "precomputed reference log-probabilities")
        var f = config(); f.referenceFree = true
        XCTAssertNotEqual(try losses(f), whole, "reference-free is another objective")
    }

    /// QLoRA: the reference pass (adapters off) of an NF4 base equals the NF4 base's own forward,
    /// to the bit.
    func testQLoRAReferenceIsTheQuantizedBase() throws {
        _ = try Fixtures.required("dpo")
        let q = QuantizationConfig(method: .nf4, blocksize: 64, doubleQuant: true)
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"), quantization: q)
        let plain = try LoadedModel.load(Fixtures.path("tiny-llama/hf"), quantization: q)
        var c = config(); c.quantize = .nf4; c.doubleQuant = true
        let ps = try pairs(lm)
        let t = try Trainer(model: lm.model, config: c, pairs: ps)
        try t.train()   // the adapter moves away from zero
        let p = try XCTUnwrap(t.preference)
        let seqs = p.sequences(ps).sequences
        let ref = try p.referenceLogProbs(model: lm.model, pairs: ps, sequences: seqs, trained: t.adapterName)
        let base = try plain.model.sequenceLogProbs(seqs)
        XCTAssertEqual(ref.chosen + ref.rejected, base.sums)
        XCTAssertNotEqual(try lm.model.sequenceLogProbs(seqs).sums, base.sums, "the trained adapter is active again")
    }

    func write(_ lines: [String]) throws -> String { try PreferenceReference.writeLines(lines, prefix: "prefs") }

    func testDataErrorsNameTheRecord() throws {
        _ = try Fixtures.required("dpo")
        let tok = try LoadedModel.load(Fixtures.path("tiny-llama/hf")).tokenizer
        let good = #"{"prompt": "A", "chosen": " b", "rejected": " c"}"#
        let cases: [(String, String)] = [
            (#"{"prompt": "A", "chosen": " same", "rejected": " same"}"#, "\"chosen\" equals \"rejected\""),
            (#"{"prompt": "A", "chosen": " b"}"#, "missing key \"rejected\""),
            (#"{"prompt": "A", "chosen": 3, "rejected": " c"}"#, "must be text or a list of messages"),
            (#"{"prompt": [{"role": "user", "content": "A"}], "chosen": " b", "rejected": " c"}"#, "all be text or all be message lists"),
            (#"{"prompt": [{"role": "user", "content": "A"}], "chosen": [{"role": "assistant", "content": "b"}], "rejected": [{"role": "assistant", "content": "c"}]}"#,
             "use one format per file"),
        ]
        for (record, message) in cases {
            let path = try write([good, record])
            defer { try? FileManager.default.removeItem(atPath: path) }
            XCTAssertThrowsError(try PreferenceData.load(path: path, tokenizer: tok, maxLength: nil, truncation: .keepStart)) { e in
                XCTAssertTrue("\(e)".contains(path + ":2:") && "\(e)".contains(message), "\(e)")
            }
        }
        // A prompt that fills max_length is dropped (keep_start), as TRL filters it; keep_end keeps it.
        let long = try write([good, #"{"prompt": "A long prompt of many many words", "chosen": " b", "rejected": " c"}"#])
        defer { try? FileManager.default.removeItem(atPath: long) }
        let kept = try PreferenceData.load(path: long, tokenizer: tok, maxLength: 6, truncation: .keepStart)
        XCTAssertEqual(kept.pairs.count, 1); XCTAssertEqual(kept.droppedCount, 1)
        let end = try PreferenceData.load(path: long, tokenizer: tok, maxLength: 6, truncation: .keepEnd)
        XCTAssertEqual(end.pairs.count, 2)
        let s = end.pairs[1].sequences(maxLength: 6, truncation: .keepEnd)
        XCTAssertEqual(s.chosen.tokens.count, 6); XCTAssertEqual(s.chosen.tokens.suffix(end.pairs[1].chosen.count), ArraySlice(end.pairs[1].chosen))
        // SFT data under --method dpo, and pairs under sft, are refused by name.
        var c = TrainingConfig(); c.method = .sft
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        XCTAssertThrowsError(try Trainer(model: lm.model, config: c, pairs: try pairs(lm))) { e in
            XCTAssertTrue("\(e)".contains("method sft trains on sequences"), "\(e)")
        }
    }
}
