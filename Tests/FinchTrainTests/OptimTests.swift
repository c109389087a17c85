import FinchCore
@testable import FinchQuant
import FinchTrain
import Foundation
import XCTest

/// AdamW, schedules, clipping and the YAML run file, against hand-computed values.
final class OptimTests: XCTestCase {
    /// Two AdamW steps on two values, against PyTorch's formulas evaluated in f64.
    func testAdamWFollowsPyTorch() {
        let value = Buffer<Float>([1.0, -2.0]), grad = Buffer<Float>([0.5, 0.25])
        let opt = AdamW(parameters: [("p", value, grad)], hyper: .init(beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1))
        var p = [1.0, -2.0], m = [0.0, 0.0], v = [0.0, 0.0]
        let grads = [[0.5, 0.25], [-1.0, 0.75]]
        for (t, g) in grads.enumerated() {
            for i in 0..<2 { grad[i] = Float(g[i]) }
            opt.update(lr: 0.01)
            let step = Double(t + 1)
            for i in 0..<2 {
                p[i] *= 1 - 0.01 * 0.1
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i]
                let denom = (v[i] / (1 - pow(0.99, step))).squareRoot() + 1e-8
                p[i] -= 0.01 / (1 - pow(0.9, step)) * m[i] / denom
            }
        }
        XCTAssertEqual(opt.step, 2)
        for i in 0..<2 { XCTAssertEqual(Double(value[i]), p[i], accuracy: 1e-6) }
    }

    /// Hugging Face's schedules: linear warmup from 0, then constant, linear or cosine decay to 0.
    func testSchedulesMatchHuggingFace() {
        let lin = LRSchedule(kind: .linear, base: 1, warmupSteps: 2, totalSteps: 10)
        XCTAssertEqual([0, 1, 2, 6, 10].map(lin.rate), [0, 0.5, 1, 0.5, 0])
        let cos = LRSchedule(kind: .cosine, base: 2, warmupSteps: 0, totalSteps: 4)
        XCTAssertEqual(cos.rate(at: 0), 2, accuracy: 1e-12)
        XCTAssertEqual(cos.rate(at: 2), 1, accuracy: 1e-12)
        XCTAssertEqual(cos.rate(at: 4), 0, accuracy: 1e-12)
        let const = LRSchedule(kind: .constant, base: 3, warmupSteps: 4, totalSteps: 10)
        XCTAssertEqual([0, 2, 4, 9].map(const.rate), [0, 1.5, 3, 3])
        XCTAssertEqual(LRSchedule.warmup(ratio: 0.03, totalSteps: 100), 3)
        XCTAssertEqual(LRSchedule.warmup(ratio: 0.03, totalSteps: 101), 4)
    }

    /// clip_grad_norm_: scale by max / (norm + 1e-6) only when the norm is larger.
    func testClippingScalesToTheMaximumNorm() {
        let a = Buffer<Float>([3, 0]), b = Buffer<Float>([4])
        XCTAssertEqual(GradientNorm.clip([a, b], maxNorm: 10), 5, accuracy: 1e-12)
        XCTAssertEqual(a[0], 3)
        XCTAssertEqual(GradientNorm.clip([a, b], maxNorm: 1), 5, accuracy: 1e-12)
        XCTAssertEqual(GradientNorm.total([a, b]), 1, accuracy: 1e-6)
    }

    func yaml(_ text: String) throws -> String {
        let p = NSTemporaryDirectory() + "finch-run-\(UUID().uuidString).yaml"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    /// qlora's quantization keys (`bits`, `quant_type`, `double_quant`) and bitsandbytes' names map to
    /// the quantization of the frozen layers; bad values are errors naming the setting.
    func testRunFileQuantizationKeys() throws {
        let c = try TrainingConfig.load(yamlAt: try yaml("bits: 4\ndouble_quant: true\nbnb_4bit_compute_dtype: bf16\n"))
        XCTAssertEqual(c.quantization, QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true, computeDType: .bf16))
        let f = try TrainingConfig.load(yamlAt: try yaml("quant_type: fp4\nquant_blocksize: 128\n"))
        XCTAssertEqual(f.quantization, QuantizationConfig(type: .fp4, blocksize: 128, doubleQuant: false, computeDType: .f32))
        XCTAssertNil(try TrainingConfig.load(yamlAt: try yaml("bits: 16\n")).quantization)
        // qlora's bits 8 is LLM.int8 (load_in_8bit), with bitsandbytes' threshold name.
        XCTAssertEqual(try TrainingConfig.load(yamlAt: try yaml("bits: 8\n")).quantization, .int8(threshold: 6))
        XCTAssertEqual(try TrainingConfig.load(yamlAt: try yaml("quant_type: int8\nllm_int8_threshold: 0\n")).quantization, .int8(threshold: 0))
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try yaml("bits: 2\n"))) { XCTAssertTrue("\($0)".contains("bits")) }
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try yaml("quant_type: int4\n"))) { XCTAssertTrue("\($0)".contains("'quantize' should be one of nf4, fp4, int8 (got \"int4\")"), "\($0)") }
        var bad = TrainingConfig(); bad.quantize = .nf4; bad.quantBlocksize = 100
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("quant_blocksize")) }
    }

    /// A YAML run file with qlora's key names; unknown keys and bad types are errors naming them.
    func testRunFileWithQLoRANames() throws {
        let c = try TrainingConfig.load(yamlAt: try yaml("""
        model_name_or_path: smollm2-135m
        dataset: data.jsonl
        output_dir: runs/x
        lora_r: 64
        lora_alpha: 16
        per_device_train_batch_size: 2
        gradient_accumulation_steps: 8
        learning_rate: 0.0002
        lr_scheduler_type: constant
        max_steps: 100
        bf16: true
        target_modules: q_proj, v_proj
        """))
        XCTAssertEqual(c.model, "smollm2-135m"); XCTAssertEqual(c.data, "data.jsonl"); XCTAssertEqual(c.output, "runs/x")
        XCTAssertEqual(c.loraR, 64); XCTAssertEqual(c.loraAlpha, 16); XCTAssertEqual(c.batchSize, 2)
        XCTAssertEqual(c.gradAccum, 8); XCTAssertEqual(c.learningRate, 2e-4); XCTAssertEqual(c.lrScheduler, .constant)
        XCTAssertEqual(c.maxSteps, 100); XCTAssertEqual(c.dtype, .bf16); XCTAssertEqual(c.targetModules, ["q_proj", "v_proj"])
        XCTAssertEqual(c.loraDropout, TrainingConfig().loraDropout, "absent keys keep their defaults")
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try yaml("lora_rr: 4\n"))) { XCTAssertTrue("\($0)".contains("lora_rr")) }
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: try yaml("lora_r: eight\n"))) { XCTAssertTrue("\($0)".contains("lora_r")) }
        // The resolved config round-trips through train_config.json.
        let back = try JSONDecoder().decode(TrainingConfig.self, from: try c.jsonData())
        XCTAssertEqual(back, c)
    }
}
