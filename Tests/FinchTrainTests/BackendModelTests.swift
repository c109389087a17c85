import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import FinchTrain
import Foundation
import XCTest

/// Every family's tiny checkpoint and T5 on the reference backend against the CPU backend in one
/// process (`LoadedModel.load(backend:)`): greedy generation gives the same tokens, and a short
/// LoRA run (forwardBackward + AdamW on the model's backend) the same losses within
/// `lossTolerance` relative.
final class BackendModelTests: XCTestCase {
    static let families = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "gpt2"]
    /// Relative difference of each step's loss, reference vs CPU (the brief's bound; measured figures printed).
    static let lossTolerance = 1e-5

    static func path(_ family: String) -> String {
        family == "t5" ? Fixtures.path("tiny-t5/v1_1/hf") : Fixtures.path("tiny-\(family)/hf")
    }

    /// A prompt and training batch for a model: token ids below its vocabulary.
    static func data(_ m: any LanguageModel) -> (prompt: [Int], batch: [TrainingSequence]) {
        let v = m.vocabSize
        let prompt = (0..<7).map { (3 + $0 * 37) % v }
        if m.kind == .encoderDecoder {
            let start = Int32((m as? any Seq2SeqLM)?.decoderStartTokenId ?? 0)
            let pairs: [([Int32], [Int32])] = [([5, 9, 14, 2, 30], [11, 12, 40, 1]), ([7, 8, 21], [33, 4, 1])]
            return (prompt, pairs.map { src, tgt in
                TrainingSequence(tokens: [start] + tgt, labels: [CrossEntropy.ignoreIndex] + tgt, source: src)
            })
        }
        let seqs: [[Int32]] = [(0..<12).map { Int32((5 + $0 * 29) % v) }, (0..<9).map { Int32((11 + $0 * 13) % v) }]
        return (prompt, seqs.map { TrainingSequence(tokens: $0) })
    }

    func testGreedyGenerationMatchesOnEveryFamily() throws {
        for f in Self.families + ["t5"] {
            var tokens: [[Int]] = []
            for kind in BackendKind.allCases {
                let lm = try LoadedModel.load(Self.path(f), backend: kind)
                XCTAssertTrue(lm.model.backend === kind.backend, f)
                let r = try Generator(lm).generate(promptTokens: [Self.data(lm.model).prompt],
                                                   options: GenerationOptions(maxNewTokens: 16, stopTokenIds: []))
                tokens.append(r[0].tokens)
            }
            XCTAssertEqual(tokens[0].count, 16, f)
            XCTAssertEqual(tokens[0], tokens[1], "\(f): greedy tokens, cpu vs reference")
        }
    }

    /// Three LoRA steps (dropout on, so the mask is checked too) on each backend from the same
    /// initialization: the losses of every step agree within `lossTolerance` relative.
    func testShortLoRARunMatchesOnEveryFamily() throws {
        for f in Self.families + ["t5"] {
            var losses: [[Double]] = []
            for kind in BackendKind.allCases {
                let lm = try LoadedModel.load(Self.path(f), backend: kind)
                let m = lm.model
                var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear)
                config.loraDropout = 0.1
                try m.createAdapter(config: config, seed: 7)
                let adam = AdamW(parameters: m.trainableParameters(), hyper: .init(weightDecay: 0.01))
                adam.backend = m.backend
                let batch = Self.data(m).batch
                var run: [Double] = []
                for step in 0..<3 {
                    m.zeroGradients()
                    run.append(try m.forwardBackward(batch, dropoutKey: UInt64(100 + step)).mean)
                    adam.update(lr: 5e-3)
                    m.adapterParametersChanged()
                }
                run.append(try m.evaluate(batch).mean)
                losses.append(run)
            }
            for (i, (a, b)) in zip(losses[0], losses[1]).enumerated() {
                let rel = abs(a - b) / abs(b)
                print("[backend model] \(f) step \(i): loss cpu \(a) reference \(b), relative \(rel)")
                XCTAssertLessThanOrEqual(rel, Self.lossTolerance, "\(f) step \(i)")
            }
            XCTAssertNotEqual(losses[0][0], losses[0][3], "\(f): the adapter trained")
        }
    }
}
