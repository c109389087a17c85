import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import XCTest

/// The preference seam on every family: a sequence objective whose gradient is −1/N for every
/// sequence is the mean cross-entropy, so `forwardBackward(_:options:objective:)` must give the LoRA
/// gradients of the SFT pass (`forwardBackward(_:lossScale:)` with 1/N), per sequence and per row;
/// its log-probabilities must be minus the SFT losses and equal `sequenceLogProbs`'. This holds the
/// head's per-row path (Gemma's soft-capping, GPT-2's tied head, T5's encoder-decoder rows) to the
/// path the PEFT tests check.
final class SequenceObjectiveFamilyTests: XCTestCase {
    static let models = ["tiny-llama/hf", "tiny-qwen2/hf", "tiny-qwen3/hf", "tiny-gemma3/hf", "tiny-mistral/hf", "tiny-gpt2/hf",
                         "tiny-t5/v1_1/hf"]

    func grads(_ m: any TrainableModel) -> [[Float]] { m.trainableParameters().map { $0.grad.array } }

    func testObjectivePassEqualsTheSFTPassOnEveryFamily() throws {
        var report: [String] = []
        for path in Self.models {
            let lm = try LoadedModel.load(Fixtures.path(path))
            let m = lm.model
            var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear)
            config.loraDropout = 0
            try m.createAdapter(config: config, name: "default", seed: 3)
            var rng = SeededRandom(seed: 11)
            for p in m.trainableParameters() where p.name.contains("lora_B") {
                for i in 0..<p.value.count { p.value[i] = 0.01 * rng.nextGaussian() }
            }
            m.adapterParametersChanged()
            let vocab = UInt64(min(m.vocabSize, 200))
            func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(3 + rng.next() % (vocab - 3)) } }
            let t5 = lm.prompts.decoderStartTokenId.map(Int32.init)
            let batch: [TrainingSequence] = [7, 5, 9].map { n in
                let t = tokens(n)
                if let start = t5 { return TrainingSequence(tokens: [start] + t, labels: [CrossEntropy.ignoreIndex] + t, source: tokens(n + 2)) }
                return TrainingSequence(tokens: t, labels: [CrossEntropy.ignoreIndex, CrossEntropy.ignoreIndex] + t.dropFirst(2))
            }
            m.zeroGradients()
            let counted = batch.reduce(0) { $0 + $1.lossTokenCount }
            let sft = try m.forwardBackward(batch, lossScale: 1 / Float(counted))
            let want = grads(m)
            let n = Double(sft.count)
            XCTAssertGreaterThan(n, 0)
            var got: [[Float]] = [], seen: SequenceLogProbs?
            for perRow in [false, true] {
                m.zeroGradients()
                let lp = try m.forwardBackward(batch, options: TrainingPassOptions()) { lp in
                    perRow ? .perRow([Double](repeating: -1 / n, count: lp.rows.count)) : .perSequence([Double](repeating: -1 / n, count: batch.count))
                }
                if perRow { XCTAssertEqual(grads(m), got, "\(path): per row equals per sequence") } else { got = grads(m); seen = lp }
            }
            let lp = try XCTUnwrap(seen)
            XCTAssertEqual(lp.counts.reduce(0, +), sft.count, path)
            XCTAssertEqual(-lp.sums.reduce(0, +), sft.sum, accuracy: 1e-5 * abs(sft.sum), "\(path): log-probabilities are minus the losses")
            let eval = try m.sequenceLogProbs(batch)
            for (a, b) in zip(eval.sums, lp.sums) { XCTAssertEqual(a, b, accuracy: 1e-6 * abs(b), "\(path): sequenceLogProbs") }
            var worst = 0.0
            for (a, b) in zip(got, want) {
                var d = 0.0, w = 0.0
                for i in a.indices { d += pow(Double(a[i] - b[i]), 2); w += pow(Double(b[i]), 2) }
                worst = max(worst, w > 0 ? (d / w).squareRoot() : d.squareRoot())
            }
            // The SFT pass scales inside the loss kernel, the objective pass the unit gradient's rows after it:
            // f32 rounding apart (measured worst 1.5e-6, gpt2), held to about 3×.
            XCTAssertLessThanOrEqual(worst, 5e-6, "\(path): gradients of the objective pass against the SFT pass")
            report.append("\(path): gradient ‖Δ‖/‖SFT‖ \(worst)")
        }
        print(report.joined(separator: "\n"))
    }
}
