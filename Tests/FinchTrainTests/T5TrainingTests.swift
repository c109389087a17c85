import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
import FinchQuant
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// T5 through Finch's trainer against PEFT: 12 AdamW steps (lr 1e-2 constant, no decay, no
/// clipping, the same two-pair batch every step) from PEFT's own initialisation of a q/v adapter,
/// on both tiny T5s (Scripts/fixtures/make_tiny_t5.py). Steps 1-8 within 1e-4 relative.
final class T5TrainingTests: XCTestCase {
    struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
    struct Expected: Decodable { let curve: [Double]; let batch: Batch }

    func testTwelveStepLossCurveMatchesPEFT() throws {
        for variant in ["v1_1", "original"] {
            let d = Fixtures.path("tiny-t5/\(variant)")
            let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
            let ref = try SafeTensorsFile(path: d + "/expected.safetensors")
            let m = try T5Model.load(directory: d + "/hf")
            try m.loadAdapter(directory: d + "/peft")
            for p in m.trainableParameters() {
                let v = try ref.floats("curve.init.\(p.name)")
                XCTAssertEqual(v.count, p.value.count, p.name)
                p.value.pointer.update(from: v, count: v.count)
            }
            m.adapterParametersChanged()
            let start = Int32(m.config.startTokenId)
            let pairs = (0..<e.batch.input_ids.count).map { b in
                let src = zip(e.batch.input_ids[b], e.batch.attention_mask[b]).filter { $0.1 == 1 }.map(\.0)
                let target = e.batch.labels[b].filter { $0 != -100 }
                return TrainingSequence(tokens: [start] + target, labels: [-100] + target, source: src)
            }
            var c = TrainingConfig()
            c.learningRate = 1e-2; c.lrScheduler = .constant; c.maxGradNorm = 0; c.weightDecay = 0
            c.batchSize = 2; c.maxSteps = 12; c.loraDropout = 0; c.loraR = 4; c.loraAlpha = 8
            let summary = try Trainer(model: m, config: c, train: pairs).train()
            XCTAssertEqual(summary.losses.count, 12)
            var worst = 0.0
            for (k, (got, want)) in zip(summary.losses, e.curve).enumerated() {
                if k < 8 { worst = max(worst, abs(got - want) / want) }
                XCTAssertEqual(got, want, accuracy: (k < 8 ? 1e-4 : 5e-2) * want, "\(variant) step \(k + 1)")
            }
            XCTAssertLessThan(e.curve[11], e.curve[0] * 0.9, "the reference curve does not fall")
            print("[t5 \(variant)] 12-step AdamW curve \(e.curve[0]) -> \(e.curve[11]); steps 1-8 within \(worst) relative of PEFT")
        }
    }
}

/// QLoRA on T5 (NF4 + double quantization; `wo` kept in f32 as transformers keeps it): a run on
/// the tiny T5 v1.1 learns its pairs, and gradient checkpointing changes nothing.
final class T5QLoRATrainingTests: XCTestCase {
    func testQLoRATrainsAndCheckpointingIsExact() throws {
        let d = Fixtures.path("tiny-t5/v1_1")
        struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
        struct Expected: Decodable { let batch: Batch }
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
        let pairs = (0..<e.batch.input_ids.count).map { b in
            let src = zip(e.batch.input_ids[b], e.batch.attention_mask[b]).filter { $0.1 == 1 }.map(\.0)
            let target = e.batch.labels[b].filter { $0 != -100 }
            return TrainingSequence(tokens: [0] + target, labels: [-100] + target, source: src)
        }
        var runs: [[Double]] = []
        for checkpointing in [false, true] {
            let m = try T5Model.load(directory: d + "/hf", quantization: QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true))
            XCTAssertTrue(m.isQuantized)
            var c = TrainingConfig()
            c.learningRate = 5e-3; c.lrScheduler = .constant; c.batchSize = 2; c.maxSteps = 30; c.loraDropout = 0.1
            c.targetModules = ["all-linear"]; c.gradientCheckpointing = checkpointing
            runs.append(try Trainer(model: m, config: c, train: pairs).train().losses)
        }
        XCTAssertEqual(runs[0], runs[1], "gradient checkpointing changed the losses")
        XCTAssertLessThan(runs[0].last!, runs[0].first! * 0.5, "QLoRA did not learn: \(runs[0])")
        print("[t5 qlora] 30 steps all-linear r8, dropout 0.1: loss \(runs[0].first!) -> \(runs[0].last!)")
    }
}
