import FinchCore
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Encoder-decoder preference training against TRL 1.16 on the tiny T5 (v1_1)
/// (Scripts/fixtures/make_t5_preference_reference.py writes Tests/Fixtures/t5-preference): the
/// encoder-decoder tokenization of `CPOTrainer` / `ORPOTrainer` (the prompt as the encoder's input, each
/// answer as the decoder's labels, EOS after each), and for SimPO, CPO-SimPO (`cpo_alpha` 1) and ORPO, on
/// the first batch each answer's averaged log-probability, the loss, the metrics and the LoRA gradients,
/// then a 10-step curve. (TRL's DPOTrainer and KTOTrainer have no encoder-decoder path: Finch refuses them on T5.)
final class T5PreferenceReferenceTests: XCTestCase {
    /// Tolerances, about three times the worst measured (printed as one JSON line per variant):
    /// averaged log-probabilities 8.9e-8, loss 5.4e-8, metrics 8.5e-8, gradients 1.50e-6, curve 1.7e-7.
    static let logProbTolerance = 3e-7      // relative, each averaged log-probability
    static let lossTolerance = 1.6e-7       // relative (absolute below 1), first batch loss
    static let metricTolerance = 2.6e-7     // relative (absolute below 1), first batch metrics
    static let gradientTolerance = 4.5e-6   // ‖Δ‖ / ‖TRL‖ per tensor
    static let curveTolerance = 5e-7        // relative (absolute below 1), loss and reward margins of every step

    static let dir = Fixtures.path("t5-preference"), model = Fixtures.path("tiny-t5/v1_1/hf")
    static let data = Fixtures.path("dpo/data/standard.jsonl")

    static func pairs(_ lm: LoadedModel) throws -> [PreferencePair] {
        let start = try XCTUnwrap(lm.prompts.decoderStartTokenId.map(Int32.init))
        return try PreferenceData.load(path: data, tokenizer: lm.tokenizer, maxLength: 1024, truncation: .keepStart,
                                       tokenization: .encoderDecoder(start: start, maxCompletionLength: 128)).pairs
    }

    func testTokenizationEqualsTRL() throws {
        _ = try Fixtures.required("t5-preference")
        let want = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.dir + "/tokenized.json")))
                                 as? [[String: [Int]]])
        let got = try Self.pairs(try LoadedModel.load(Self.model))
        XCTAssertEqual(got.count, want.count)
        for (p, w) in zip(got, want) {
            XCTAssertEqual(p.prompt.map(Int.init), w["prompt_input_ids"])
            XCTAssertEqual(p.chosen.map(Int.init), w["chosen_labels"])
            XCTAssertEqual(p.rejected.map(Int.init), w["rejected_labels"])
        }
    }

    func testFirstBatchAndCurveEqualTRL() throws {
        _ = try Fixtures.required("t5-preference")
        let e = try PreferenceReference.json(Self.dir + "/expected.json")
        let grads = try SafeTensorsFile(path: Self.dir + "/expected.safetensors")
        let variants = try XCTUnwrap(e["variants"] as? [String: [String: Any]])
        var report: [String] = []
        for name in ["simpo", "cpo-simpo", "orpo"] {
            let x = try XCTUnwrap(variants[name])
            let first = try XCTUnwrap(x["first_batch"] as? [String: Any])
            var c = TrainingConfig()
            c.model = Self.model
            c.method = name == "orpo" ? .orpo : .simpo; c.beta = e["beta"] as! Double
            c.simpoGamma = e["simpo_gamma"] as! Double; c.cpoAlpha = x["cpo_alpha"] as? Double ?? 0
            c.learningRate = e["learning_rate"] as! Double; c.lrScheduler = .linear; c.warmupSteps = 0; c.warmupRatio = 0
            c.maxSteps = e["steps"] as? Int; c.batchSize = e["batch"] as! Int; c.maxGradNorm = 1; c.weightDecay = 0; c.loggingSteps = 0
            func start() throws -> (LoadedModel, [PreferencePair]) {
                let lm = try LoadedModel.load(c.model)
                try lm.model.loadAdapter(directory: Self.dir + "/adapter")
                return (lm, try Self.pairs(lm))
            }
            let (lm, pairs) = try start()
            let trainer = try Trainer(model: lm.model, config: c, pairs: pairs)
            let p = try XCTUnwrap(trainer.preference)
            let n = pairs.count

            // Averaged log-probabilities of the answers (every decoder row is an answer token).
            let lp = try lm.model.sequenceLogProbs(p.sequences(pairs).sequences)
            var worstLogProb = 0.0
            for (side, key) in [(0, "chosen_logps"), (n, "rejected_logps")] {
                let want = try XCTUnwrap(first[key] as? [Double])
                for i in 0..<n {
                    XCTAssertEqual(lp.counts[side + i], lp.ranges[side + i].count, "every decoder row is counted")
                    let got = lp.sums[side + i] / Double(lp.counts[side + i])
                    worstLogProb = max(worstLogProb, abs(got - want[i]) / abs(want[i]))
                }
            }
            XCTAssertLessThanOrEqual(worstLogProb, Self.logProbTolerance, "\(name) log-probabilities")

            let (lossError, worstMetric, worstGradient) = try PreferenceReference.firstBatchErrors(
                model: lm.model, objective: p, pairs: pairs, adapter: trainer.adapterName, first: first, grads: grads, prefix: name)
            XCTAssertLessThanOrEqual(lossError, Self.lossTolerance, "\(name) loss")
            XCTAssertLessThanOrEqual(worstMetric, Self.metricTolerance, "\(name) metrics")
            XCTAssertLessThanOrEqual(worstGradient, Self.gradientTolerance, "\(name) gradients")

            let (lm2, pairs2) = try start()
            let worstCurve = try PreferenceReference.curveError(try Trainer(model: lm2.model, config: c, pairs: pairs2),
                                                                curve: try XCTUnwrap(x["curve"] as? [String: [Double]]), label: name)
            XCTAssertLessThanOrEqual(worstCurve, Self.curveTolerance, "\(name) curve")
            report.append("{\"family\": \"t5\", \"variant\": \"\(name)\", \"logp_rel\": \(worstLogProb), \"loss_rel\": \(lossError), \"metric_rel\": \(worstMetric), \"grad_rel\": \(worstGradient), \"curve_rel\": \(worstCurve)}")
        }
        print(report.joined(separator: "\n"))
    }
}
