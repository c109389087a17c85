import FinchCore
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Finch's ORPO against TRL 1.16's ORPOTrainer on the tiny llama and qwen2 checkpoints
/// (Scripts/fixtures/make_orpo_reference.py writes Tests/Fixtures/orpo from the data and initial
/// adapters of Tests/Fixtures/dpo): ORPO's tokenization of the four preference formats, and for β 0.1
/// and 0.5, on the first batch each answer's averaged log-probability, the loss (the chosen sequences'
/// NLL, prompt included, and the odds-ratio term), ORPO's metrics and the LoRA gradients, then a 10-step
/// curve.
final class ORPOReferenceTests: XCTestCase {
    /// Tolerances, about three times the worst measured (printed as one JSON line per case; measured on
    /// the default product path: averaged log-probabilities 1.7e-7, loss 2.9e-8, metrics 5.0e-7 (TRL's
    /// f32 log odds), gradients 1.23e-6, curve 3.2e-7):
    static let logProbTolerance = 5e-7      // relative, each averaged log-probability
    static let lossTolerance = 1e-7         // relative (absolute below 1), first batch loss
    static let metricTolerance = 1.5e-6     // relative (absolute below 1), first batch metrics
    static let gradientTolerance = 4e-6     // ‖Δ‖ / ‖TRL‖ per tensor
    static let curveTolerance = 1e-6        // relative (absolute below 1), loss and reward margins of every step

    static let dir = Fixtures.path("orpo"), data = Fixtures.path("dpo/data")

    static func json(_ path: String) throws -> [String: Any] { try PreferenceReference.json(path) }
    static func relative(_ a: Double, _ b: Double) -> Double { PreferenceReference.relative(a, b) }

    func testTokenizationEqualsORPOTrainer() throws {
        _ = try Fixtures.required("orpo")
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

    func testFirstBatchAndCurveEqualORPOTrainer() throws {
        _ = try Fixtures.required("orpo")
        var report: [String] = []
        for family in ["llama", "qwen2"] {
            let e = try Self.json(Self.dir + "/\(family)/expected.json")
            let grads = try SafeTensorsFile(path: Self.dir + "/\(family)/expected.safetensors")
            let variants = try XCTUnwrap(e["betas"] as? [String: [String: Any]])
            for name in ["beta0.1", "beta0.5"] {
                let x = try XCTUnwrap(variants[name])
                let first = try XCTUnwrap(x["first_batch"] as? [String: Any])
                var c = TrainingConfig()
                c.model = Fixtures.path("tiny-\(family)/hf")
                c.method = .orpo; c.beta = x["beta"] as! Double
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

                // Averaged log-probabilities of the answers (the chosen ones from their answer rows).
                let (seqs, ct, _) = p.sequences(pairs)
                let lp = try lm.model.sequenceLogProbs(seqs)
                var worstLogProb = 0.0
                let wantChosen = try XCTUnwrap(first["chosen_logps"] as? [Double]), wantRejected = try XCTUnwrap(first["rejected_logps"] as? [Double])
                for i in 0..<n {
                    let r = lp.ranges[i], answer = (r.upperBound - 1 - ct[i])..<(r.upperBound - 1)
                    let ac = answer.reduce(0.0) { $0 + Double(lp.rows[$1]) } / Double(ct[i])
                    worstLogProb = max(worstLogProb, abs(ac - wantChosen[i]) / abs(wantChosen[i]))
                    let ar = lp.sums[n + i] / Double(lp.counts[n + i])
                    worstLogProb = max(worstLogProb, abs(ar - wantRejected[i]) / abs(wantRejected[i]))
                }
                XCTAssertLessThanOrEqual(worstLogProb, Self.logProbTolerance, "\(family) \(name) log-probabilities")

                // The first batch.
                let (lossError, worstMetric, worstGradient) = try PreferenceReference.firstBatchErrors(
                    model: lm.model, objective: p, pairs: pairs, adapter: trainer.adapterName, first: first, grads: grads, prefix: name)
                XCTAssertLessThanOrEqual(lossError, Self.lossTolerance, "\(family) \(name) loss")
                XCTAssertLessThanOrEqual(worstMetric, Self.metricTolerance, "\(family) \(name) metrics")
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

    /// ORPO's per-row gradient against finite differences of its loss in each row's log-probability.
    func testLossGradientsMatchFiniteDifferences() {
        // Two pairs; chosen sequences labelled everywhere (prompt 2 tokens), rejected on their answers.
        let ranges = [0..<5, 5..<9, 9..<13, 13..<18]
        let counted: Set<Int> = [0, 1, 2, 3, 5, 6, 7, 10, 11, 14, 15, 16]   // rows with a target
        var rows = [Float](repeating: 0, count: 18)
        for r in counted { rows[r] = -Float(r % 5 + 1) * 0.37 }
        func lp(_ rows: [Float]) -> SequenceLogProbs {
            var s = SequenceLogProbs()
            s.rows = rows; s.ranges = ranges; s.counted = (0..<rows.count).map { counted.contains($0) }
            for range in ranges {
                let c = range.filter { counted.contains($0) }
                s.sums.append(c.reduce(0.0) { $0 + Double(rows[$1]) }); s.counts.append(c.count)
            }
            return s
        }
        for loss in [ORPOLoss(beta: 0.1), ORPOLoss(beta: 0.7)] {
            let ref = (chosen: [0.0, 0], rejected: [0.0, 0]), ct = [2, 1], rt = [2, 2]
            guard case .perRow(let g) = loss.outcome(lp(rows), reference: ref, chosenTokens: ct, rejectedTokens: rt).1 else {
                return XCTFail("ORPO gives its gradient per row")
            }
            let h: Float = 1e-3
            for r in counted {
                var up = rows, down = rows
                up[r] += h; down[r] -= h
                let numeric = (loss.outcome(lp(up), reference: ref, chosenTokens: ct, rejectedTokens: rt).0.loss
                    - loss.outcome(lp(down), reference: ref, chosenTokens: ct, rejectedTokens: rt).0.loss) / (Double(up[r]) - Double(down[r]))
                XCTAssertEqual(g[r], numeric, accuracy: 1e-5 * max(1, abs(numeric)), "row \(r)")
            }
        }
    }
}
