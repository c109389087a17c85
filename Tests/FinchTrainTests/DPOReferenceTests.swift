import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Finch's DPO against TRL 1.16's DPOTrainer on the tiny llama and qwen2 checkpoints
/// (Scripts/fixtures/make_dpo_reference.py writes Tests/Fixtures/dpo): tokenization of TRL's four
/// preference formats, and for each of the 13 loss types on the first batch the
/// per-answer log-probabilities of the policy (the initial adapter) and of the base (adapters off),
/// the loss, TRL's metrics and the LoRA gradients, then a 10-step curve. As TRL does for a model that
/// already carries an adapter, the reference of training is a frozen copy of the initial adapter
/// (Finch's `ref_adapter`), so the first step's log-ratios are 0 and the curve carries the rest.
final class DPOReferenceTests: XCTestCase {
    /// Tolerances, about three times the worst measured (printed as one JSON line per case; measured
    /// on the default product path over the 13 loss types: log-probabilities 5.4e-8, loss 6.0e-8 (sft),
    /// metrics 7.3e-8, gradients 1.61e-6, curve 1.5e-6 (qwen2 ipo); the curves of sppo_hard, whose
    /// squared loss falls from 50 to 0.3 in ten steps, and sigmoid_norm move more: 1.1e-5 and 7.4e-6):
    static let logProbTolerance = 2e-7      // relative, each summed log-probability
    static let lossTolerance = 3e-7         // relative (absolute below 1), first batch loss and metrics
    static let gradientTolerance = 5e-6     // ‖Δ‖ / ‖TRL‖ per tensor
    static let curveTolerance = 5e-6        // relative (absolute below 1), loss and reward margins of every step
    static let curveTolerances: [DPOLossType: Double] = [.sppoHard: 3.5e-5, .sigmoidNorm: 2.5e-5]

    static let dir = Fixtures.path("dpo")

    static func json(_ path: String) throws -> [String: Any] { try PreferenceReference.json(path) }
    static func relative(_ a: Double, _ b: Double) -> Double { PreferenceReference.relative(a, b) }

    func testTokenizationEqualsTRL() throws {
        _ = try Fixtures.required("dpo")
        let tok = try LoadedModel.load(Fixtures.path("tiny-llama/hf")).tokenizer
        let expected = try Self.json(Self.dir + "/tokenized.json")
        for name in ["standard", "conversational", "implicit", "implicit-text"] {
            let want = try XCTUnwrap(expected[name] as? [[String: [Int]]])
            let got = try PreferenceData.load(path: Self.dir + "/data/\(name).jsonl", tokenizer: tok, maxLength: 1024, truncation: .keepStart)
            XCTAssertEqual(got.pairs.count, want.count, name)
            for (p, w) in zip(got.pairs, want) {
                XCTAssertEqual(p.prompt.map(Int.init), w["prompt_ids"], "\(name) prompt")
                XCTAssertEqual(p.chosen.map(Int.init), w["chosen_ids"], "\(name) chosen")
                XCTAssertEqual(p.rejected.map(Int.init), w["rejected_ids"], "\(name) rejected")
            }
        }
    }

    func config(family: String, lossType: DPOLossType, labelSmoothing: Double, e: [String: Any]) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-\(family)/hf")
        c.method = .dpo; c.lossType = lossType.rawValue; c.labelSmoothing = labelSmoothing; c.beta = e["beta"] as! Double
        c.refAdapter = Self.dir + "/\(family)/adapter"
        c.learningRate = e["learning_rate"] as! Double; c.lrScheduler = .linear; c.warmupSteps = 0; c.warmupRatio = 0
        c.maxSteps = e["steps"] as? Int; c.batchSize = e["batch"] as! Int; c.maxGradNorm = 1; c.weightDecay = 0
        c.loggingSteps = 0
        return c
    }

    func testFirstBatchAndCurveEqualTRL() throws {
        _ = try Fixtures.required("dpo")
        var report: [String] = []
        for family in ["llama", "qwen2"] {
            let e = try Self.json(Self.dir + "/\(family)/expected.json")
            let grads = try SafeTensorsFile(path: Self.dir + "/\(family)/expected.safetensors")
            let losses = try XCTUnwrap(e["losses"] as? [String: [String: Any]])
            for lossType in DPOLossType.allCases {
                let x = try XCTUnwrap(losses[lossType.rawValue])
                let first = try XCTUnwrap(x["first_batch"] as? [String: Any])
                let lm = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
                let c = config(family: family, lossType: lossType, labelSmoothing: x["label_smoothing"] as! Double, e: e)
                let pairs = try PreferenceData.load(path: Self.dir + "/data/standard.jsonl", tokenizer: lm.tokenizer, maxLength: c.maxLength,
                                                    truncation: c.truncationMode).pairs
                let trainer = try Trainer(model: lm.model, config: c, pairs: pairs)
                let p = try XCTUnwrap(trainer.preference)
                let model = lm.model
                let n = pairs.count
                let seqs = p.sequences(pairs).sequences

                // Log-probabilities: the policy (the initial adapter) and the base (adapters off).
                let policy = try model.sequenceLogProbs(seqs)
                model.setActiveAdapter(nil)
                let base = try model.sequenceLogProbs(seqs)
                model.setActiveAdapter(trainer.adapterName)
                var worstLogProb = 0.0
                for (got, key) in [(Array(policy.sums[..<n]), "chosen_logps"), (Array(policy.sums[n...]), "rejected_logps"),
                                   (Array(base.sums[..<n]), "ref_chosen_logps"), (Array(base.sums[n...]), "ref_rejected_logps")] {
                    let want = try XCTUnwrap(first[key] as? [Double])
                    for (g, w) in zip(got, want) { worstLogProb = max(worstLogProb, abs(g - w) / abs(w)) }
                }
                XCTAssertLessThanOrEqual(worstLogProb, Self.logProbTolerance, "\(family) \(lossType) log-probabilities")

                // The first batch: loss, metrics, gradients (the reference is the frozen copy of the adapter).
                let (lossError, worstMetric, worstGradient) = try PreferenceReference.firstBatchErrors(
                    model: model, objective: p, pairs: pairs, adapter: trainer.adapterName, first: first, grads: grads, prefix: lossType.rawValue)
                XCTAssertLessThanOrEqual(lossError, Self.lossTolerance, "\(family) \(lossType) loss")
                XCTAssertLessThanOrEqual(worstMetric, Self.lossTolerance, "\(family) \(lossType) metrics")
                XCTAssertLessThanOrEqual(worstGradient, Self.gradientTolerance, "\(family) \(lossType) gradients")

                // Ten steps of training (a fresh model and trainer: the same as `finch train`).
                let lm2 = try LoadedModel.load(Fixtures.path("tiny-\(family)/hf"))
                let worstCurve = try PreferenceReference.curveError(try Trainer(model: lm2.model, config: c, pairs: pairs),
                                                                    curve: try XCTUnwrap(x["curve"] as? [String: [Double]]), label: "\(family) \(lossType)")
                XCTAssertLessThanOrEqual(worstCurve, Self.curveTolerances[lossType] ?? Self.curveTolerance, "\(family) \(lossType) curve")
                report.append("{\"family\": \"\(family)\", \"loss_type\": \"\(lossType.rawValue)\", \"logp_rel\": \(worstLogProb), \"loss_rel\": \(lossError), \"metric_rel\": \(worstMetric), \"grad_rel\": \(worstGradient), \"curve_rel\": \(worstCurve)}")
            }
        }
        print(report.joined(separator: "\n"))
    }
}
