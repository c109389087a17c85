import FinchCore
import FinchFormats
import FinchLoRA
import FinchModels
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// A Finch-trained adapter against a PEFT-trained one, per decoder family
/// (Scripts/fixtures/make_trained_adapters.py writes Tests/Fixtures/tiny-<family>/peft-trained from the
/// committed tiny checkpoints): PEFT makes an all-linear r 4 adapter with its own initialisation
/// (A kaiming-uniform, B zero) and trains it 10 AdamW steps (lr 1e-2 constant, betas 0.9/0.999,
/// eps 1e-8, no weight decay, no clipping, the same 2×20-token batch every step, labels = inputs).
///
/// Finch's `Trainer` does what `finch train` does with the same settings: it creates the adapter
/// itself (Finch's "all-linear" must name PEFT's modules), takes PEFT's initial values, trains and
/// saves with Finch's saver. Checked: the per-step losses, every saved tensor (by name; values by
/// ‖Finch − PEFT‖ / ‖PEFT‖ per tensor: AdamW's first step moves every element of B by about lr in
/// the sign of its gradient, so an element whose gradient is near zero could take either sign and
/// an element-wise relative error would be no bound; the largest element difference is printed,
/// measured at most 2.2e-5 of its tensor's largest element), and the adapter_config.json fields
/// that decide what PEFT loads.
final class PEFTTrainedAdapterTests: XCTestCase {
    struct Optim: Decodable { let lr: Double; let betas: [Double]; let eps: Double; let weight_decay: Double }
    struct Lora: Decodable { let r: Int; let lora_alpha: Double; let lora_dropout: Double; let target_modules: String }
    struct Expected: Decodable {
        let batch: [[Int32]]
        let steps: Int
        let optimizer: Optim
        let lora: Lora
        let losses: [Double]
    }

    static let families = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "gpt2"]

    /// Tolerances, about three times the worst measured over Finch's f32 product paths (oneDNN as
    /// dispatched, oneDNN held to AVX2, OpenBLAS; Scripts/results/checks/peft-trained-adapters-*.jsonl):
    /// losses 4.64e-7 relative, tensors 4.32e-6 by norm (both gemma3); on the default path 1.84e-7
    /// and 4.20e-6. The test prints its figures as one JSON line per family.
    static let lossTolerance = 1.5e-6        // relative, every step
    static let tensorTolerance = 1.5e-5      // ‖Δ‖ / ‖PEFT‖ per tensor

    static func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    func testFinchTrainedAdapterEqualsPEFTTrained() throws {
        for f in Self.families {
            let d = try Fixtures.required("tiny-\(f)/peft-trained")
            let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
            let lm = try LoadedModel.load(Fixtures.path("tiny-\(f)/hf"))
            let m = lm.model

            var c = TrainingConfig()
            c.model = Fixtures.path("tiny-\(f)/hf")
            c.loraR = e.lora.r; c.loraAlpha = e.lora.lora_alpha; c.loraDropout = e.lora.lora_dropout
            c.targetModules = [e.lora.target_modules]
            c.learningRate = e.optimizer.lr; c.lrScheduler = .constant; c.warmupSteps = 0; c.warmupRatio = 0
            c.adamBeta1 = e.optimizer.betas[0]; c.adamBeta2 = e.optimizer.betas[1]; c.adamEpsilon = e.optimizer.eps
            c.weightDecay = e.optimizer.weight_decay; c.maxGradNorm = 0; c.optimizer = .adamw
            c.batchSize = e.batch.count; c.gradAccum = 1; c.maxSteps = e.steps
            let run = NSTemporaryDirectory() + "finch-peft-trained-\(f)-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: run) }
            let trainer = try Trainer(model: m, config: c, train: e.batch.map { TrainingSequence(tokens: $0) }, runDirectory: run)

            // Finch's adapter covers PEFT's modules; its values become PEFT's initial ones.
            let initial = try LoRAAdapter.load(directory: d + "/initial", linears: m.linearModules)
            let live = m.adapter(named: trainer.adapterName, config: trainer.adapterConfig)
            XCTAssertEqual(live.modules.keys.sorted(), initial.modules.keys.sorted(), "\(f): all-linear names other modules than PEFT's")
            for (name, mine) in live.modules {
                guard let theirs = initial.modules[name] else { continue }
                XCTAssertTrue(theirs.b.array.allSatisfy { $0 == 0 }, "\(f) \(name): PEFT's initial B is not zero")
                mine.a.pointer.update(from: theirs.a.pointer, count: mine.a.count)
                mine.b.pointer.update(from: theirs.b.pointer, count: mine.b.count)
            }
            m.adapterParametersChanged()

            let result = try trainer.train()
            XCTAssertEqual(result.losses.count, e.steps, f)
            var worstLoss = 0.0
            for (k, (got, want)) in zip(result.losses, e.losses).enumerated() {
                let rel = abs(got - want) / want
                worstLoss = max(worstLoss, rel)
                XCTAssertLessThanOrEqual(rel, Self.lossTolerance, "\(f) step \(k + 1): Finch \(got), PEFT \(want)")
            }

            // The adapter Finch saved against the one PEFT saved.
            let ours = try SafeTensorsFile(path: run + "/adapter_model.safetensors")
            let theirs = try SafeTensorsFile(path: d + "/trained/adapter_model.safetensors")
            XCTAssertEqual(ours.tensorNames.sorted(), theirs.tensorNames.sorted(), f)
            var worstTensor = 0.0, worstName = "", worstElement = 0.0
            for n in theirs.tensorNames where ours.info(n) != nil {
                XCTAssertEqual(ours.info(n)?.shape, theirs.info(n)?.shape, "\(f) \(n)")
                let a = try ours.floats(n), b = try theirs.floats(n)
                let rel = relativeError(a, b)
                if rel > worstTensor { worstTensor = rel; worstName = n }
                // Largest element difference relative to the tensor's largest element (printed, not held).
                let scale = Double(b.map { abs($0) }.max() ?? 0)
                worstElement = max(worstElement, Double(zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30))
                XCTAssertLessThanOrEqual(rel, Self.tensorTolerance, "\(f) \(n)")
                if n.contains("lora_B") { XCTAssertGreaterThan(scale, 0, "\(f) \(n): PEFT's B did not move") }
            }

            // The config fields that decide what PEFT builds.
            let oc = try Self.json(run + "/adapter_config.json"), pc = try Self.json(d + "/trained/adapter_config.json")
            for key in ["r", "lora_alpha", "lora_dropout"] {
                XCTAssertEqual((oc[key] as? NSNumber)?.doubleValue, (pc[key] as? NSNumber)?.doubleValue, "\(f) adapter_config \(key)")
            }
            for key in ["use_rslora", "use_dora", "fan_in_fan_out"] {
                XCTAssertEqual(oc[key] as? Bool, pc[key] as? Bool, "\(f) adapter_config \(key)")
                XCTAssertNotNil(oc[key] as? Bool, "\(f) adapter_config \(key)")
            }
            for key in ["peft_type", "task_type", "bias"] {
                XCTAssertEqual(oc[key] as? String, pc[key] as? String, "\(f) adapter_config \(key)")
            }
            // target_modules: Finch writes "all-linear", PEFT the names it resolved; both load to the same modules.
            let oursLoaded = try LoRAAdapter.load(directory: run, linears: m.linearModules)
            let theirsLoaded = try LoRAAdapter.load(directory: d + "/trained", linears: m.linearModules)
            XCTAssertEqual(oursLoaded.modules.keys.sorted(), theirsLoaded.modules.keys.sorted(), f)
            let peftNames = try XCTUnwrap(pc["target_modules"] as? [String], f)
            XCTAssertEqual(Set(peftNames), Set(theirsLoaded.modules.keys), "\(f): PEFT's target_modules")
            XCTAssertTrue(oc["target_modules"] as? String == "all-linear" || Set(oc["target_modules"] as? [String] ?? []) == Set(peftNames),
                          "\(f): Finch's target_modules \(oc["target_modules"] ?? "none")")

            // One JSON line per family (Scripts/checks/training/peft_trained_adapters.sh keeps them as raw lines).
            let row: [String: Any] = ["family": f, "steps": e.steps, "loss_first": e.losses.first!, "loss_last": e.losses.last!,
                                      "max_loss_rel": worstLoss, "max_tensor_rel_norm": worstTensor, "worst_tensor": worstName,
                                      "max_element_diff_over_tensor_max": worstElement, "tensors": theirs.tensorNames.count]
            let json = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys, .withoutEscapingSlashes])
            print("[peft-trained] " + String(decoding: json, as: UTF8.self))
        }
    }
}
