import FinchCore
import FinchLoRA
import FinchModels
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// GRPO's rollouts from the one decode loop, with the adapter being trained, and one update on them: groups of
/// `generations` per prompt, reproducible from the seed, each completion what `finch generate` samples with that
/// seed, truncation flagged at max_completion_length; then rewards, advantages and a pass of the objective that
/// moves the adapter so that the better completions of each group become more likely.
final class GRPORolloutTests: XCTestCase {
    func testRolloutsAreGroupsFromTheDecodeLoopAndOneUpdateFavoursTheRewarded() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        let m = lm.model
        var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj", "v_proj"]))
        config.loraDropout = 0
        try m.attachRandomizedAdapter(config: config, name: "policy", seed: 1, bScale: 0.02, bSeed: 2)
        let prompts = [[1, 17, 42, 99], [1, 250, 7]]
        let sampling = SamplingOptions(temperature: 1, topK: 0, topP: 1)
        let rollouts = try GRPORollouts.sample(lm: lm, prompts: prompts, generations: 4, maxCompletionLength: 6,
                                               sampling: sampling, seed: 11)
        XCTAssertEqual(rollouts.map(\.prompt), [0, 0, 0, 0, 1, 1, 1, 1])
        XCTAssertEqual(try GRPORollouts.sample(lm: lm, prompts: prompts, generations: 4, maxCompletionLength: 6,
                                               sampling: sampling, seed: 11), rollouts, "the same seed, the same rollouts")
        XCTAssertGreaterThan(Set(rollouts.map(\.tokens)).count, 4, "sampled, not greedy")
        for (i, r) in rollouts.enumerated() {
            // Each is what the decode loop gives that prompt alone with that sequence's seed.
            let alone = try Generator(lm).generate(promptTokens: [prompts[r.prompt]],
                                                   options: GenerationOptions(maxNewTokens: 6, sampling: sampling, seed: 11 &+ UInt64(i)))[0]
            XCTAssertEqual(r.tokens, alone.tokens, "rollout \(i)")
            XCTAssertEqual(r.truncated, r.tokens.count == 6 && !lm.defaultStopTokens.contains(r.tokens.last!), "rollout \(i)")
        }

        // Reward: the completion's first token id is even. One update (no KL, no old policy: ratio 1) with the
        // objective's gradient, then the rewarded completions are more likely relative to the others.
        let rewards = rollouts.map { [Optional(Double(1 - $0.tokens[0] % 2))] }
        let advantages = GRPOLoss.advantages(rewards: rewards, weights: [1], groupSize: 4, scaling: .group).advantages
        let sequences = rollouts.map { r in
            TrainingSequence(tokens: (prompts[r.prompt] + r.tokens).map(Int32.init),
                             labels: [Int32](repeating: CrossEntropy.ignoreIndex, count: prompts[r.prompt].count) + r.tokens.map(Int32.init))
        }
        func score() throws -> Double {   // Σ advantage × mean token log-probability: what the grpo update raises
            let lp = try m.sequenceLogProbs(sequences)
            return advantages.indices.reduce(0) { $0 + advantages[$1] * lp.sums[$1] / Double(lp.counts[$1]) }
        }
        let before = try score()
        var settings = GRPOSettings()
        settings.lossType = .grpo
        m.zeroGradients()
        var loss = 0.0
        _ = try m.forwardBackward(sequences, options: TrainingPassOptions(), objective: GRPOLoss.objective(
            advantages: advantages, old: Array(repeating: nil, count: 8), reference: Array(repeating: nil, count: 8),
            settings: settings, accumulation: 1, generationTokens: 0, ranks: 1) { r, _ in loss = r.loss })
        XCTAssertEqual(loss, 0, accuracy: 1e-12, "at ratio 1 the loss is −mean advantage: 0 within each group")
        for p in m.trainableParameters() { for i in 0..<p.value.count { p.value[i] -= 0.5 * p.grad[i] } }
        m.adapterParametersChanged()
        XCTAssertGreaterThan(try score(), before, "a step down the gradient favours the rewarded completions")
    }
}
