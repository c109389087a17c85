import FinchCore
import FinchFormats
import FinchModels
import FinchTestSupport
import FinchTokenizer
@testable import FinchTrain
import Foundation
import XCTest

/// Finch's KTO against TRL 1.16's KTOTrainer on the tiny llama and qwen2 checkpoints
/// (Scripts/fixtures/make_kto_reference.py writes Tests/Fixtures/kto, with the initial adapters of
/// Tests/Fixtures/dpo): KTO's tokenization of unpaired files (text and conversations) and of paired
/// ones (unpaired as TRL does), the KL completions of each batch; and for loss_type kto, kto with
/// desirable / undesirable weights, apo_zero_unpaired and kto with precomputed reference
/// log-probabilities: on the first batch the log-probabilities of the completions and of the KL
/// completions (policy and base), the loss, TRL's metrics and the LoRA gradients, then a 10-step curve
/// over two batches taken in order. As TRL does for a model that already carries an adapter, the
/// reference is a frozen copy of the initial adapter (`ref_adapter`): the first step's log-ratios are 0.
final class KTOReferenceTests: XCTestCase {
    /// Tolerances, about three times the worst measured (printed as one JSON line per case; measured
    /// on the default product path: log-probabilities 4.1e-8, loss 2.9e-8, metrics 3.5e-8, gradients
    /// 1.55e-6, curve (loss, margins, kl, rewards) 3.5e-6 (llama, weighted)):
    static let logProbTolerance = 1.5e-7    // relative, each summed log-probability
    static let lossTolerance = 1e-7         // relative (absolute below 1), first batch loss and metrics
    static let gradientTolerance = 5e-6     // ‖Δ‖ / ‖TRL‖ per tensor
    static let curveTolerance = 1e-5        // relative (absolute below 1), loss, rewards, margins and kl of every step

    static let dir = Fixtures.path("kto"), batch = 4

    static func json(_ path: String) throws -> [String: Any] { try PreferenceReference.json(path) }

    static func examples(_ path: String, tokenizer: Tokenizer) throws -> [UnpairedExample] {
        var e = try PreferenceData.loadUnpaired(path: path, tokenizer: tokenizer, maxLength: 1024).unpaired
        UnpairedExample.assignKLCompletions(&e, batchSize: batch)
        return e
    }

    func testTokenizationEqualsKTOTrainer() throws {
        _ = try Fixtures.required("kto")
        let tok = try LoadedModel.load(Fixtures.path("tiny-llama/hf")).tokenizer
        let expected = try Self.json(Self.dir + "/tokenized.json")
        for (name, path) in [("unpaired", Self.dir + "/data/unpaired.jsonl"), ("unpaired-conversational", Self.dir + "/data/unpaired-conversational.jsonl"),
                             ("standard", Fixtures.path("dpo/data/standard.jsonl")), ("conversational", Fixtures.path("dpo/data/conversational.jsonl"))] {
            let want = try XCTUnwrap(expected[name] as? [[String: Any]], name)
            let got = try Self.examples(path, tokenizer: tok)
            XCTAssertEqual(got.count, want.count, name)
            for (i, (e, w)) in zip(got, want).enumerated() {
                XCTAssertEqual(e.prompt.map(Int.init), w["prompt_ids"] as? [Int], "\(name) \(i) prompt")
                XCTAssertEqual(e.completion.map(Int.init), w["completion_ids"] as? [Int], "\(name) \(i) completion")
                XCTAssertEqual(e.desirable, w["label"] as? Bool, "\(name) \(i) label")
                XCTAssertEqual(e.klCompletion.map(Int.init), w["KL_completion_ids"] as? [Int], "\(name) \(i) KL completion")
            }
        }
    }

    func config(family: String, case x: [String: Any], e: [String: Any]) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = Fixtures.path("tiny-\(family)/hf")
        c.method = .kto; c.beta = e["beta"] as! Double
        c.lossType = x["loss_type"] as? String
        c.desirableWeight = x["desirable_weight"] as? Double ?? 1; c.undesirableWeight = x["undesirable_weight"] as? Double ?? 1
        c.precomputeRefLogProbs = x["precompute_ref_log_probs"] as? Bool ?? false
        c.refAdapter = Fixtures.path("dpo/\(family)/adapter")
        c.learningRate = e["learning_rate"] as! Double; c.lrScheduler = .linear; c.warmupSteps = 0; c.warmupRatio = 0
        c.maxSteps = e["steps"] as? Int; c.batchSize = e["batch"] as! Int; c.maxGradNorm = 1; c.weightDecay = 0
        c.loggingSteps = 0
        return c
    }

    func testFirstBatchAndCurveEqualKTOTrainer() throws {
        _ = try Fixtures.required("kto")
        var report: [String] = []
        for family in ["llama", "qwen2"] {
            let e = try Self.json(Self.dir + "/\(family)/expected.json")
            let grads = try SafeTensorsFile(path: Self.dir + "/\(family)/expected.safetensors")
            let cases = try XCTUnwrap(e["cases"] as? [String: [String: Any]])
            XCTAssertEqual(Set(cases.keys), ["kto", "kto_weighted", "apo_zero_unpaired", "kto_precomputed"])
            for name in cases.keys.sorted() {
                let x = try XCTUnwrap(cases[name])
                let first = try XCTUnwrap(x["first_batch"] as? [String: Any])
                let c = config(family: family, case: x, e: e)
                let lm = try LoadedModel.load(c.model)
                let examples = try Self.examples(Self.dir + "/data/unpaired.jsonl", tokenizer: lm.tokenizer)
                let trainer = try Trainer(model: lm.model, config: c, examples: .unpaired(examples))
                let p = try XCTUnwrap(trainer.preference)
                let model = lm.model
                let batch = Array(examples.prefix(Self.batch))
                let (seqs, kl) = p.sequences(batch)

                // Log-probabilities of the completions and the KL completions: the policy and the base.
                var worstLogProb = 0.0
                for (got, key) in [(seqs, "logps"), (kl, "KL_logps")] {
                    let policy = got.isEmpty ? [] : try model.sequenceLogProbs(got).sums
                    model.setActiveAdapter(nil)
                    let base = got.isEmpty ? [] : try model.sequenceLogProbs(got).sums
                    model.setActiveAdapter(trainer.adapterName)
                    for (g, k) in [(policy, key), (base, "ref_" + key)] {
                        let want = try XCTUnwrap(first[k] as? [Double], k)
                        XCTAssertEqual(g.count, want.count, "\(family) \(name) \(k)")
                        for (a, b) in zip(g, want) { worstLogProb = max(worstLogProb, abs(a - b) / abs(b)) }
                    }
                }
                XCTAssertLessThanOrEqual(worstLogProb, Self.logProbTolerance, "\(family) \(name) log-probabilities")

                // The first batch: loss, metrics, gradients (the reference is the frozen copy of the adapter).
                let (lossError, worstMetric, worstGradient) = try PreferenceReference.firstBatchErrors(
                    model: model, objective: p, examples: .unpaired(batch), adapter: trainer.adapterName, first: first, grads: grads, prefix: name)
                XCTAssertLessThanOrEqual(lossError, Self.lossTolerance, "\(family) \(name) loss")
                XCTAssertLessThanOrEqual(worstMetric, Self.lossTolerance, "\(family) \(name) metrics")
                XCTAssertLessThanOrEqual(worstGradient, Self.gradientTolerance, "\(family) \(name) gradients")

                // Ten steps over the two batches, in order (a fresh model and trainer: the same as `finch train`).
                let lm2 = try LoadedModel.load(c.model)
                let worstCurve = try PreferenceReference.curveError(
                    try Trainer(model: lm2.model, config: c, examples: .unpaired(examples)),
                    curve: try XCTUnwrap(x["curve"] as? [String: [Double]]), label: "\(family) \(name)", also: ["kl", "rewards/chosen", "rewards/rejected"])
                XCTAssertLessThanOrEqual(worstCurve, Self.curveTolerance, "\(family) \(name) curve")
                report.append("{\"family\": \"\(family)\", \"case\": \"\(name)\", \"logp_rel\": \(worstLogProb), \"loss_rel\": \(lossError), \"metric_rel\": \(worstMetric), \"grad_rel\": \(worstGradient), \"curve_rel\": \(worstCurve)}")
            }
        }
        print(report.joined(separator: "\n"))
    }
}
