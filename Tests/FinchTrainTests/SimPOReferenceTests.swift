import FinchCore
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Finch's SimPO against TRL 1.16's CPOTrainer (`loss_type="simpo"`) on the tiny llama and qwen2
/// checkpoints (Scripts/fixtures/make_simpo_reference.py writes Tests/Fixtures/simpo from the data and
/// initial adapters of Tests/Fixtures/dpo): CPO's tokenization of the four preference formats, and for
/// SimPO (cpo_alpha 0), CPO-SimPO (cpo_alpha 1) and SimPO with label smoothing 0.1, on the first batch
/// each answer's averaged log-probability, the loss, CPO's metrics and the LoRA gradients, then a
/// 10-step curve.
final class SimPOReferenceTests: XCTestCase {
    /// Tolerances, about three times the worst measured (printed as one JSON line per case; measured on
    /// the default product path: averaged log-probabilities 1.7e-7, loss 6.8e-8, metrics 1.1e-7,
    /// gradients 1.42e-6, curve 3.2e-7):
    static let logProbTolerance = 5e-7      // relative, each averaged log-probability
    static let lossTolerance = 3e-7         // relative (absolute below 1), first batch loss and metrics
    static let gradientTolerance = 5e-6     // ‖Δ‖ / ‖TRL‖ per tensor
    static let curveTolerance = 1e-6        // relative (absolute below 1), loss and reward margins of every step

    static let dir = Fixtures.path("simpo"), data = Fixtures.path("dpo/data")

    static func json(_ path: String) throws -> [String: Any] { try PreferenceReference.json(path) }
    static func relative(_ a: Double, _ b: Double) -> Double { PreferenceReference.relative(a, b) }

    func testTokenizationEqualsCPOTrainer() throws {
        _ = try Fixtures.required("simpo")
        let tok = try LoadedModel.load(Fixtures.path("tiny-llama/hf")).tokenizer
        let expected = try Self.json(Self.dir + "/tokenized.json")
        for name in ["standard", "conversational", "implicit", "implicit-text"] {
            let want = try XCTUnwrap(expected[name] as? [[String: [Int]]])
            let got = try PreferenceData.load(path: Self.data + "/\(name).jsonl", tokenizer: tok, maxLength: 1024, truncation: .keepStart,
                                              tokenization: .legacy)
            XCTAssertEqual(got.pairs.count, want.count, name)
            for (p, w) in zip(got.pairs, want) {
                let s = p.sequences(maxLength: 1024, truncation: .keepStart)
                XCTAssertEqual(s.chosen.tokens.map(Int.init), w["chosen_input_ids"], "\(name) chosen")
                XCTAssertEqual(s.chosen.labels.map(Int.init), w["chosen_labels"], "\(name) chosen labels")
                XCTAssertEqual(s.rejected.tokens.map(Int.init), w["rejected_input_ids"], "\(name) rejected")
                XCTAssertEqual(s.rejected.labels.map(Int.init), w["rejected_labels"], "\(name) rejected labels")
            }
        }
    }

    func testFirstBatchAndCurveEqualCPOTrainer() throws {
        _ = try Fixtures.required("simpo")
        var report: [String] = []
        for family in ["llama", "qwen2"] {
            let e = try Self.json(Self.dir + "/\(family)/expected.json")
            let grads = try SafeTensorsFile(path: Self.dir + "/\(family)/expected.safetensors")
            let variants = try XCTUnwrap(e["variants"] as? [String: [String: Any]])
            for name in ["simpo", "cpo-simpo", "simpo-smoothed"] {
                let x = try XCTUnwrap(variants[name])
                let first = try XCTUnwrap(x["first_batch"] as? [String: Any])
                var c = TrainingConfig()
                c.model = Fixtures.path("tiny-\(family)/hf")
                c.method = .simpo; c.beta = e["beta"] as! Double; c.simpoGamma = e["simpo_gamma"] as! Double
                c.cpoAlpha = x["cpo_alpha"] as! Double; c.labelSmoothing = x["label_smoothing"] as! Double
                c.learningRate = e["learning_rate"] as! Double; c.lrScheduler = .linear; c.warmupSteps = 0; c.warmupRatio = 0
                c.maxSteps = e["steps"] as? Int; c.batchSize = e["batch"] as! Int; c.maxGradNorm = 1; c.weightDecay = 0; c.loggingSteps = 0
                func start() throws -> (LoadedModel, [PreferencePair]) {
                    let lm = try LoadedModel.load(c.model)
                    try lm.model.loadAdapter(directory: Fixtures.path("dpo/\(family)/adapter"))
                    let pairs = try PreferenceData.load(path: Self.data + "/standard.jsonl", tokenizer: lm.tokenizer, maxLength: c.maxLength,
                                                        truncation: .keepStart, tokenization: .legacy).pairs
                    return (lm, pairs)
                }
                let (lm, pairs) = try start()
                let trainer = try Trainer(model: lm.model, config: c, pairs: pairs)
                let p = try XCTUnwrap(trainer.preference)
                let n = pairs.count

                // Averaged log-probabilities of the answers.
                let lp = try lm.model.sequenceLogProbs(p.sequences(pairs).sequences)
                var worstLogProb = 0.0
                for (range, key) in [(0..<n, "chosen_logps"), (n..<(2 * n), "rejected_logps")] {
                    let want = try XCTUnwrap(first[key] as? [Double])
                    for (i, w) in zip(range, want) {
                        worstLogProb = max(worstLogProb, abs(lp.sums[i] / Double(lp.counts[i]) - w) / abs(w))
                    }
                }
                XCTAssertLessThanOrEqual(worstLogProb, Self.logProbTolerance, "\(family) \(name) log-probabilities")

                // The first batch.
                let (lossError, worstMetric, worstGradient) = try PreferenceReference.firstBatchErrors(
                    model: lm.model, objective: p, pairs: pairs, adapter: trainer.adapterName, first: first, grads: grads, prefix: name)
                XCTAssertLessThanOrEqual(lossError, Self.lossTolerance, "\(family) \(name) loss")
                XCTAssertLessThanOrEqual(worstMetric, Self.lossTolerance, "\(family) \(name) metrics")
                XCTAssertLessThanOrEqual(worstGradient, Self.gradientTolerance, "\(family) \(name) gradients")

                // Ten steps, a fresh model.
                let (lm2, pairs2) = try start()
                let worstCurve = try PreferenceReference.curveError(try Trainer(model: lm2.model, config: c, pairs: pairs2),
                                                                    curve: try XCTUnwrap(x["curve"] as? [String: [Double]]), label: "\(family) \(name)")
                XCTAssertLessThanOrEqual(worstCurve, Self.curveTolerance, "\(family) \(name) curve")
                report.append("{\"family\": \"\(family)\", \"variant\": \"\(name)\", \"logp_rel\": \(worstLogProb), \"loss_rel\": \(lossError), \"metric_rel\": \(worstMetric), \"grad_rel\": \(worstGradient), \"curve_rel\": \(worstCurve)}")
            }
        }
        print(report.joined(separator: "\n"))
    }

    /// SimPO's gradients against finite differences of its loss (with the CPO term and smoothing).
    func testLossGradientsMatchFiniteDifferences() {
        let s = PairLogProbs(chosen: [-12.5, -30.25, -7.0], rejected: [-14.0, -29.5, -9.75], referenceChosen: [0, 0, 0],
                             referenceRejected: [0, 0, 0], chosenTokens: [5, 9, 3], rejectedTokens: [6, 8, 4])
        for loss in [SimPOLoss(beta: 2, gamma: 0.5), SimPOLoss(beta: 0.1, gamma: 0.5, labelSmoothing: 0.1, cpoAlpha: 1)] {
            let o = loss.evaluate(s)
            let h = 1e-6
            for i in 0..<s.count {
                for side in 0..<2 {
                    var up = s, down = s
                    if side == 0 { up.chosen[i] += h; down.chosen[i] -= h } else { up.rejected[i] += h; down.rejected[i] -= h }
                    let numeric = (loss.evaluate(up).loss - loss.evaluate(down).loss) / (2 * h)
                    XCTAssertEqual(side == 0 ? o.dChosen[i] : o.dRejected[i], numeric, accuracy: 1e-7 * max(1, abs(numeric)), "pair \(i) side \(side)")
                }
            }
        }
    }
}
