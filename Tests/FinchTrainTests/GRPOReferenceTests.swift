import FinchCore
import FinchFormats
import FinchModels
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// GRPO against TRL 1.16's GRPOTrainer on fixed completions and rewards (Scripts/fixtures/make_grpo_reference.py,
/// Tests/Fixtures/grpo): the tiny LLaMA with a LoRA adapter on q/v, two prompts × four completions (one cut at
/// max_completion_length, one unscorable by the second reward function). Measured: token log-probabilities
/// within 1.4e-6 (the reference's too), losses 9.7e-7 relative, LoRA gradients 1.5e-6 relative.
final class GRPOReferenceTests: XCTestCase {
    struct Expected: Decodable {
        let prompt_ids: [[Int32]]
        let completions: [[Int32]]
        let num_generations: Int
        let max_completion_length: Int
        let eos: Int32
        let reward_a: [Double]
        let reward_b: [Double?]
        let reward_weights: [Double]
        let beta: Double
        let epsilon: Double
        let epsilon_high: Double
        let num_items_in_batch: Int
    }

    static let dir = Fixtures.path("grpo")

    static func expected() throws -> (Expected, SafeTensorsFile) {
        (try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json"))),
         try SafeTensorsFile(path: dir + "/expected.safetensors"))
    }

    /// [B][T] of a [B, maxT] fixture tensor, each row cut to its completion's length.
    static func rows(_ ref: SafeTensorsFile, _ key: String, lengths: [Int]) throws -> [[Double]] {
        let v = try ref.floats(key), width = v.count / lengths.count
        return lengths.enumerated().map { i, n in (0..<n).map { Double(v[i * width + $0]) } }
    }

    func testAdvantagesMatchTRL() throws {
        let (e, ref) = try Self.expected()
        let rewards = zip(e.reward_a, e.reward_b).map { [Optional($0), $1] }
        for scaling in RewardScaling.allCases {
            let ours = GRPOLoss.advantages(rewards: rewards, weights: e.reward_weights, groupSize: e.num_generations, scaling: scaling).advantages
            for key in ["advantages.\(scaling.rawValue)", "advantages.\(scaling.rawValue).masked"] {
                let theirs = try ref.floats(key).map(Double.init)
                XCTAssertEqual(ours.count, theirs.count)
                for (a, b) in zip(ours, theirs) { XCTAssertEqual(a, b, accuracy: 1e-6, key) }
            }
        }
        // A completion no reward function scores is out of its group's statistics and gets advantage 0.
        let a = GRPOLoss.advantages(rewards: [[1], [nil], [0], [0.5]], weights: [1], groupSize: 4, scaling: .group)
        XCTAssertEqual(a.advantages[1], 0)
        XCTAssertEqual(a.advantages[0], 0.5 / (0.5 + 1e-4), accuracy: 1e-12)
        XCTAssertTrue(a.rewards[1].isNaN)
    }

    /// Every loss type's value, its KL and clip ratios as TRL logs them, and the LoRA gradients, with the
    /// fixture's old-policy log-probabilities (moved off the current ones so that both bounds clip) and Finch's
    /// own reference pass (the adapter off), each checked against TRL's.
    func testLossesAndGradientsMatchTRL() throws {
        let (e, ref) = try Self.expected()
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.dir + "/expected.json"))) as! [String: Any]
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        let m = lm.model
        try m.loadAdapter(directory: Self.dir + "/peft")
        let lengths = e.completions.map(\.count)
        let sequences = e.completions.enumerated().map { i, c in
            let p = e.prompt_ids[i / e.num_generations]
            return TrainingSequence(tokens: p + c, labels: [Int32](repeating: CrossEntropy.ignoreIndex, count: p.count) + c)
        }
        let rewards = zip(e.reward_a, e.reward_b).map { [Optional($0), $1] }
        let advantages = GRPOLoss.advantages(rewards: rewards, weights: e.reward_weights, groupSize: e.num_generations, scaling: .group).advantages
        let old = try Self.rows(ref, "old_logps", lengths: lengths)
        // The reference: the adapter off.
        let adapter = m.activeAdapter
        m.setActiveAdapter(nil)
        let reference = GRPOLoss.tokenLogProbs(try m.sequenceLogProbs(sequences))
        m.setActiveAdapter(adapter)
        var worstLogProb = 0.0
        for (ours, theirs) in [(reference, try Self.rows(ref, "ref_logps", lengths: lengths))] {
            for (a, b) in zip(ours.joined(), theirs.joined()) { worstLogProb = max(worstLogProb, abs(a - b)) }
        }
        var settings = GRPOSettings()
        settings.numGenerations = e.num_generations; settings.maxCompletionLength = e.max_completion_length
        settings.beta = e.beta; settings.epsilon = e.epsilon; settings.epsilonHigh = e.epsilon_high
        let theirLogProbs = try Self.rows(ref, "logps", lengths: lengths)
        for type in GRPOLossType.allCases {
            settings.lossType = type
            m.zeroGradients()
            var seen: (GRPOLossResult, [[Double]])?
            let objective = GRPOLoss.objective(advantages: advantages, old: old.map { $0 }, reference: reference.map { $0 },
                                               settings: settings, accumulation: 1, generationTokens: e.num_items_in_batch,
                                               ranks: 1) { seen = ($0, $1) }
            _ = try m.forwardBackward(sequences, options: TrainingPassOptions(), objective: objective)
            let (result, logProbs) = try XCTUnwrap(seen)
            for (a, b) in zip(logProbs.joined(), theirLogProbs.joined()) { worstLogProb = max(worstLogProb, abs(a - b)) }
            let loss = Double(try ref.floats("\(type.rawValue).loss")[0])
            XCTAssertEqual(result.loss, loss, accuracy: 1e-5 * abs(loss), type.rawValue)
            let metrics = try XCTUnwrap(meta["\(type.rawValue).metrics"] as? [String: Double])
            XCTAssertEqual(result.meanKL, try XCTUnwrap(metrics["kl"]), accuracy: 1e-6, "\(type) kl")
            XCTAssertEqual(result.clipLow, try XCTUnwrap(metrics["clip_ratio/low_mean"]), accuracy: 1e-6, "\(type) low clip")
            XCTAssertEqual(result.clipHigh, try XCTUnwrap(metrics["clip_ratio/high_mean"]), accuracy: 1e-6, "\(type) high clip")
            XCTAssertEqual(result.clipRegion, try XCTUnwrap(metrics["clip_ratio/region_mean"]), accuracy: 1e-6, "\(type) region")
            var worst = 0.0, compared = 0
            for p in m.trainableParameters() {
                let key = "\(type.rawValue).\(p.name).grad"
                guard ref.info(key) != nil else { XCTFail("no TRL gradient named \(key)"); continue }
                let err = relativeError(p.grad.array, try ref.floats(key))
                worst = max(worst, err)
                compared += 1
                XCTAssertLessThanOrEqual(err, 5e-6, key)
            }
            XCTAssertEqual(compared, 8, "A and B of q_proj and v_proj in both layers")
            print("[grpo \(type.rawValue)] loss \(result.loss) vs TRL \(loss) (relative \(abs(result.loss - loss) / abs(loss))), gradients within \(worst) (relative)")
        }
        print("[grpo] token log-probabilities (the model's and the reference's) within \(worstLogProb) of TRL's")
        XCTAssertLessThan(worstLogProb, 5e-6)
    }

    /// A step's micro-batches add up to the loss of the whole generation batch where TRL's aggregation does
    /// (grpo with equal micro-batches, dr_grpo, dapo with every token of the generation counted), and a
    /// completion without counted tokens (masked as truncated) still counts in grpo's mean over completions.
    func testMicroBatchesAddUpToTheGenerationBatch() {
        var rng = SeededRandom(seed: 4)
        let completions = (0..<8).map { i in
            GRPOCompletion(logProbs: (0..<(i == 5 ? 0 : 2 + i % 4)).map { _ in -2 + Double(rng.nextGaussian()) },
                           oldLogProbs: nil, referenceLogProbs: nil, advantage: Double(rng.nextGaussian()))
        }.map { c -> GRPOCompletion in
            var c = c
            c.oldLogProbs = c.logProbs.map { $0 + 0.3 * Double(rng.nextGaussian()) }
            c.referenceLogProbs = c.logProbs.map { $0 - 0.2 }
            return c
        }
        let tokens = completions.reduce(0) { $0 + $1.logProbs.count }
        var s = GRPOSettings()
        s.beta = 0.1; s.maxCompletionLength = 6
        for type in [GRPOLossType.grpo, .drGRPO, .dapo] {
            s.lossType = type
            let whole = GRPOLoss.microBatch(completions, settings: s, accumulation: 1, generationTokens: tokens)
            let halves = [completions[..<4], completions[4...]].map {
                GRPOLoss.microBatch(Array($0), settings: s, accumulation: 2, generationTokens: tokens)
            }
            XCTAssertEqual(halves[0].loss + halves[1].loss, whole.loss, accuracy: 1e-12, type.rawValue)
            XCTAssertEqual(Array((halves[0].gradients + halves[1].gradients).joined()), Array(whole.gradients.joined()), type.rawValue)
        }
        // grpo: the empty completion's share of the mean is 0 but it counts among the 8.
        s.lossType = .grpo
        let without = GRPOLoss.microBatch(completions.enumerated().filter { $0.offset != 5 }.map(\.element), settings: s)
        XCTAssertEqual(GRPOLoss.microBatch(completions, settings: s).loss, without.loss * 7 / 8, accuracy: 1e-12)
    }
}
