import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import Foundation
@testable import FinchModels
import FinchTestSupport
import XCTest

/// Mixture-of-experts models beyond FamilyTests' reference checks: batched serving with adapters on the
/// experts, and 4-bit experts (QLoRA) saved in bitsandbytes' layout.
final class MoEModelTests: XCTestCase {
    /// Measured 4.8e-7 (matrix products blocked differently for a different number of rows).
    static let tolerance: Float = 1.5e-6

    /// Each expert runs over the rows routed to it gathered together, rows of different requests (and
    /// adapters) mixed, so the per-row adapters must follow their rows into every expert. A batch of three
    /// sequences (the base, adapter a, adapter b; all-linear, so the router and every expert's w1 / w2 / w3
    /// carry LoRA) gives each sequence the logits it gets alone with its adapter active, for the prompt and
    /// for a decoded step.
    func testPerRowAdaptersOnExpertsMatchEachAlone() throws {
        let lm = try LoadedModel.load(FamilyTests.dir("mixtral") + "/hf")
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        try m.attachRandomizedAdapter(r: 2, name: "a")
        try m.attachRandomizedAdapter(r: 4, name: "b")
        var expertLayers = 0
        m.forEachLoRALinear { l in if l.name.contains(".experts.") && l.adapters["a"] != nil && l.adapters["b"] != nil { expertLayers += 1 } }
        XCTAssertEqual(expertLayers, 2 * 4 * 3, "both adapters on every expert's w1, w2, w3 in both layers")

        let (e, _) = try FamilyTests.expected("mixtral")
        let prompts = [e.sequences[0], e.sequences[1], Array(e.sequences[1].reversed())]
        let adapters: [String?] = [nil, "a", "b"]
        let next = [5, 17, 29]

        // Each alone, with its adapter active: the prompt's logits, then one decoded token's.
        var alone: [(prompt: [Float], step: [Float])] = []
        for (p, a) in zip(prompts, adapters) {
            m.setActiveAdapter(a)
            let cache = m.makeCache()
            let first = try m.forward([SequenceInput(tokens: p, cache: cache)], logits: .all).values.array
            let second = try m.forward([SequenceInput(tokens: [next[alone.count]], cache: cache)], logits: .all).values.array
            alone.append((first, second))
        }
        m.setActiveAdapter(nil)

        // Together, each run of rows with its own adapter.
        func spans(_ lengths: [Int]) -> [AdapterSpan] {
            var start = 0
            return zip(lengths, adapters).map { n, a in defer { start += n }; return AdapterSpan(rows: start..<(start + n), adapter: a) }
        }
        let caches = prompts.map { _ in m.makeCache() }
        let batched = try m.forward(zip(prompts, caches).map { SequenceInput(tokens: $0, cache: $1) }, logits: .all,
                                    context: PassContext(backend: m.backend, rowAdapters: spans(prompts.map(\.count))))
        let stepped = try m.forward(zip(next, caches).map { SequenceInput(tokens: [$0], cache: $1) }, logits: .all,
                                    context: PassContext(backend: m.backend, rowAdapters: spans([1, 1, 1])))
        let v = batched.vocabSize
        var worst: Float = 0
        for s in 0..<3 {
            let together = Array(batched.values.array[(batched.rows[s].lowerBound * v)..<(batched.rows[s].upperBound * v)])
            let step = Array(stepped.values.array[(stepped.rows[s].lowerBound * v)..<(stepped.rows[s].upperBound * v)])
            worst = max(worst, maxAbsDiff(together, alone[s].prompt), maxAbsDiff(step, alone[s].step))
            XCTAssertLessThanOrEqual(maxAbsDiff(together, alone[s].prompt), Self.tolerance, "sequence \(s) (\(adapters[s] ?? "base")) prompt")
            XCTAssertLessThanOrEqual(maxAbsDiff(step, alone[s].step), Self.tolerance, "sequence \(s) (\(adapters[s] ?? "base")) step")
        }
        print("[mixtral] per-row adapters on experts: batched within \(worst) of each alone")

        // The adapters matter: a and b on the base's prompt move its logits.
        for a in ["a", "b"] {
            m.setActiveAdapter(a)
            let with = try m.forward([SequenceInput(tokens: prompts[0], cache: m.makeCache())], logits: .all).values.array
            XCTAssertGreaterThan(maxAbsDiff(with, alone[0].prompt), 1e-3, "adapter \(a) changes the logits")
        }
    }

    /// NF4 on load quantizes the router, every expert and the shared expert as every other block linear;
    /// the model saved in bitsandbytes' layout (`finch quantize`) reloads holding the same codes and gives
    /// the same logits; a QLoRA adapter on the experts trains (non-zero gradients on every expert it reached).
    func testFourBitExpertsSaveReloadAndTrain() throws {
        let dir = FamilyTests.dir("qwen2_moe") + "/hf"
        let lm = try LoadedModel.load(dir, dtype: .f32, quantization: QuantizationConfig(type: .nf4))
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        var quantized = 0
        for s in m.linearSlots where s.name.contains(".mlp.") {
            if case .quantized = baseWeight(s.get()).storage { quantized += 1 } else { XCTFail("\(s.name) is not 4-bit") }
        }
        XCTAssertEqual(quantized, 2 * (1 + 4 * 3 + 3 + 1) + 3, "routers, experts, shared experts and gates of layers 0, 2; layer 1's MLP")
        let (e, _) = try FamilyTests.expected("qwen2_moe")
        let before = try FamilyTests.logits(m, e.sequences[1])
        let scratch = NSTemporaryDirectory() + "finch-moe-nf4-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try m.saveHuggingFace(to: scratch, tokenizer: lm.tokenizer)
        let reloaded = try XCTUnwrap(try LoadedModel.load(scratch).model as? DecoderModel)
        XCTAssertTrue(reloaded.isQuantized)
        XCTAssertEqual(try FamilyTests.logits(reloaded, e.sequences[1]), before, "reloaded 4-bit experts give the same logits")

        try m.attachRandomizedAdapter(r: 2, name: "q")
        try m.forwardBackward(e.batch.map { TrainingSequence(tokens: $0) })
        var reached = 0
        for p in m.trainableParameters() where p.name.contains(".experts.") && p.name.contains("lora_A") {
            if p.grad.array.contains(where: { $0 != 0 }) { reached += 1 }
        }
        // Every expert that serves a row with a target learns (its gate, up and down); the others are not touched.
        // (A sequence's last row has no target and, attention being causal, reaches no other row's loss; the
        // routing of the other rows is that of the sequence without it.)
        let served = try m.routes(e.batch.map { TrainingSequence(tokens: Array($0.dropLast())) }).map { Set($0.chosen).count }.reduce(0, +)
        XCTAssertGreaterThanOrEqual(served, 6, "most experts serve the batch")
        XCTAssertEqual(reached, 3 * served, "a gradient on the gate, up and down of every expert that served a row, none elsewhere")
    }

    /// A Mixtral without a sliding window (as Mixtral-8x7B's config) exported to GGUF as llama.cpp stores it
    /// (`llama` with `expert_count`, `ffn_gate_inp`, 3-D `ffn_gate_exps` / `ffn_up_exps` / `ffn_down_exps`)
    /// reads back with the same logits (f32) and, q8_0, with each expert's slice kept in its blocks. With
    /// the window the export is refused by name. (llama.cpp's own reading: Scripts/checks/export/llamacpp_check.sh.)
    func testMixtralGGUFExportReadsBack() throws {
        let scratch = NSTemporaryDirectory() + "finch-moe-gguf-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let windowed = try XCTUnwrap(try LoadedModel.load(FamilyTests.dir("mixtral") + "/hf").model as? DecoderModel)
        XCTAssertThrowsError(try windowed.saveGGUF(to: scratch + "/w.gguf", tokenizer: [], type: .f32)) {
            XCTAssertTrue("\($0)".contains("sliding_window"), "\($0)")
        }
        // The fixture with sliding_window null.
        let hf = scratch + "/hf"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: FamilyTests.dir("mixtral") + "/hf", toPath: hf)
        let cfg = hf + "/config.json"
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cfg))) as? [String: Any])
        json["sliding_window"] = NSNull()
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: cfg))
        let lm = try LoadedModel.load(hf)
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        let ids = [1, 17, 42, 99, 250, 7, 3, 55, 61, 80, 12, 9]
        let expected = try FamilyTests.logits(m, ids)
        for (type, tolerance) in [(GGUFExportType.f32, Float(1e-6)), (.q8_0, 0.15)] {   // measured 0 and 0.035
            let path = scratch + "/mixtral-\(type.rawValue).gguf"
            let result = try m.saveGGUF(to: path, tokenizer: try lm.tokenizer.ggufMetadata(pre: nil), type: type)
            XCTAssertEqual(result.architecture, "llama")
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.metadata["llama.expert_count"]?.intValue, 4)
            XCTAssertEqual(file.metadata["llama.expert_used_count"]?.intValue, 2)
            XCTAssertEqual(file.tensor(named: "blk.1.ffn_gate_exps.weight")?.dimensions, [64, 96, 4], "ggml [in, out, experts]")
            XCTAssertEqual(file.tensor(named: "blk.1.ffn_down_exps.weight")?.dimensions, [96, 64, 4])
            XCTAssertEqual(file.tensor(named: "blk.0.ffn_gate_inp.weight")?.dimensions, [64, 4])
            let back = try LoadedModel.load(path, ggufBlocks: true)
            XCTAssertEqual(back.model.architecture, "mixtral")
            if type != .f32 {
                let d = try XCTUnwrap(back.model as? DecoderModel)
                guard case .quantized(let q as GGUFBlockMatrix, _) = baseWeight(d.layers[1].moe!.experts[3].down).storage else {
                    return XCTFail("q8_0 experts are kept in their blocks")
                }
                XCTAssertEqual(q.type, .q8_0)
            }
            let diff = maxAbsDiff(try FamilyTests.logits(back.causal, ids), expected)
            print("[mixtral gguf \(type.rawValue)] read back: max |logit diff| = \(diff)")
            XCTAssertLessThanOrEqual(diff, tolerance, type.rawValue)
        }
    }

    /// Qwen3-MoE as Qwen3-30B-A3B is made (the tiny fixture) exported as llama.cpp's `qwen3moe` reads back with
    /// the same logits (f32) and within q8_0's rounding; what that architecture does not compute is refused.
    func testQwen3MoEGGUFExportReadsBack() throws {
        let scratch = NSTemporaryDirectory() + "finch-qwen3moe-gguf-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let lm = try LoadedModel.load(FamilyTests.dir("qwen3_moe") + "/hf")
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        let ids = [1, 17, 42, 99, 250, 7, 3, 55, 61, 80, 12, 9]
        let expected = try FamilyTests.logits(m, ids)
        for (type, tolerance) in [(GGUFExportType.f32, Float(1e-6)), (.q8_0, 0.15)] {   // measured 0 and 0.050
            let path = scratch + "/qwen3moe-\(type.rawValue).gguf"
            XCTAssertEqual(try m.saveGGUF(to: path, tokenizer: try lm.tokenizer.ggufMetadata(pre: nil), type: type).architecture, "qwen3moe")
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.metadata["qwen3moe.expert_count"]?.intValue, 8)
            XCTAssertEqual(file.metadata["qwen3moe.expert_feed_forward_length"]?.intValue, 32)
            XCTAssertEqual(file.tensor(named: "blk.1.ffn_up_exps.weight")?.dimensions, [64, 32, 8])
            let back = try LoadedModel.load(path, ggufBlocks: true)
            XCTAssertEqual(back.model.architecture, "qwen3_moe")
            let diff = maxAbsDiff(try FamilyTests.logits(back.causal, ids), expected)
            print("[qwen3_moe gguf \(type.rawValue)] read back: max |logit diff| = \(diff)")
            XCTAssertLessThanOrEqual(diff, tolerance, type.rawValue)
        }
    }

    /// Qwen2-MoE (llama.cpp's `qwen2moe`: the shared expert's 1-D gate, its expert widths in the keys) and OLMoE
    /// (`olmoe`; the tied head written again as `output`, which that architecture requires) read back with the same
    /// logits (f32) and within q8_0's rounding. The fixtures themselves are refused by name: Qwen2-MoE's has a dense
    /// layer, OLMoE's grouped-query attention (llama.cpp's olmoe normalizes k over the hidden size); the checkpoints
    /// exported are derived as Scripts/checks/export/derive_moe_checkpoints.py derives them for llama.cpp's check.
    func testQwen2MoEAndOLMoEGGUFExportReadsBack() throws {
        let scratch = NSTemporaryDirectory() + "finch-moe2-gguf-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        for (f, arch, refusal) in [("qwen2_moe", "qwen2moe", "dense MLP layers [1]"), ("olmoe", "olmoe", "grouped-query attention")] {
            let fixture = try XCTUnwrap(try LoadedModel.load(FamilyTests.dir(f) + "/hf").model as? DecoderModel)
            XCTAssertThrowsError(try fixture.saveGGUF(to: scratch + "/\(f).gguf", tokenizer: [], type: .f32)) {
                XCTAssertTrue("\($0)".contains(refusal) && "\($0)".contains(arch), "\($0)")
            }
            let lm = try LoadedModel.load(try Self.derivedForLlamaCpp(f, into: scratch + "/\(f)-hf"))
            let m = try XCTUnwrap(lm.model as? DecoderModel)
            let ids = [1, 17, 42, 99, 250, 7, 3, 55, 61, 80, 12, 9]
            let expected = try FamilyTests.logits(m, ids)
            for (type, tolerance) in [(GGUFExportType.f32, Float(1e-6)), (.q8_0, 0.15)] {   // measured 0 and 0.041 (Qwen2-MoE), 0.052 (OLMoE)
                let path = scratch + "/\(f)-\(type.rawValue).gguf"
                XCTAssertEqual(try m.saveGGUF(to: path, tokenizer: try lm.tokenizer.ggufMetadata(pre: nil), type: type).architecture, arch)
                let file = try GGUFFile(path: path)
                XCTAssertEqual(file.metadata["\(arch).expert_count"]?.intValue, 4)
                XCTAssertEqual(file.metadata["\(arch).expert_used_count"]?.intValue, 2)
                XCTAssertNotNil(file.tensor(named: "output.weight"), "\(arch) requires output")
                if f == "qwen2_moe" {
                    XCTAssertEqual(file.metadata["qwen2moe.expert_feed_forward_length"]?.intValue, 48)
                    XCTAssertEqual(file.metadata["qwen2moe.expert_shared_feed_forward_length"]?.intValue, 80)
                    XCTAssertEqual(file.tensor(named: "blk.1.ffn_gate_inp_shexp.weight")?.dimensions, [64])
                    XCTAssertEqual(file.tensor(named: "blk.1.ffn_up_exps.weight")?.dimensions, [64, 48, 4])
                    XCTAssertNotNil(file.tensor(named: "blk.0.attn_q.bias"))
                } else {
                    XCTAssertEqual(file.tensor(named: "blk.1.attn_k_norm.weight")?.dimensions, [64])
                }
                let back = try LoadedModel.load(path, ggufBlocks: true)
                XCTAssertEqual(back.model.architecture, f)
                let diff = maxAbsDiff(try FamilyTests.logits(back.causal, ids), expected)
                print("[\(f) gguf \(type.rawValue)] read back: max |logit diff| = \(diff)")
                XCTAssertLessThanOrEqual(diff, tolerance, "\(f) \(type.rawValue)")
            }
        }
    }

    /// The tiny fixture made llama.cpp-shaped (see derive_moe_checkpoints.py): Qwen2-MoE's sparse layers 0 and 2 alone;
    /// OLMoE's key/value heads repeated for the query heads that share them (the same model).
    static func derivedForLlamaCpp(_ f: String, into dir: String) throws -> String {
        try FileManager.default.copyItem(atPath: FamilyTests.dir(f) + "/hf", toPath: dir)
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        var cfg = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        var entries: [SafeTensorsWriter.Entry] = []
        for n in file.tensorNames {
            var name = n, shape = try XCTUnwrap(file.info(n)).shape, values = try file.floats(n)
            if f == "qwen2_moe" {
                if n.hasPrefix("model.layers.1.") { continue }
                if n.hasPrefix("model.layers.2.") { name = "model.layers.1." + n.dropFirst("model.layers.2.".count) }
            } else if ["self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.k_norm.weight"].contains(where: n.hasSuffix) {
                let heads = 4, group = 2, d = 16, row = values.count / shape[0]
                var repeated: [Float] = []
                for h in 0..<heads {
                    let first = (h / group) * d * row
                    repeated += values[first..<(first + d * row)]
                }
                values = repeated
                shape[0] = heads * d
            }
            entries.append(.float32(name: name, shape: shape, values: values))
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        if f == "qwen2_moe" {
            cfg["num_hidden_layers"] = 2; cfg["mlp_only_layers"] = [Int](); cfg["layer_types"] = ["full_attention", "full_attention"]
        } else {
            cfg["num_key_value_heads"] = 4
        }
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        return dir
    }

    /// DoRA on every expert (and the router and shared expert) of Qwen2-MoE: the adapter's logits equal the merged
    /// model's (each expert's magnitude and direction folded into its weight), and a training pass gives magnitude
    /// gradients to exactly the experts that served a row. (PEFT 0.21 has no DoRA on transformers 5's fused experts;
    /// on attention and routers it is the same DoRA as every linear's, checked against PEFT in PEFTGradientTests.)
    func testDoRAOnExpertsMergesToTheSameLogits() throws {
        let m = try XCTUnwrap(try LoadedModel.load(FamilyTests.dir("qwen2_moe") + "/hf").model as? DecoderModel)
        var config = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .allLinear, useDoRA: true)
        config.loraDropout = 0
        try m.attachRandomizedAdapter(config: config, name: "d", seed: 3, bScale: 0.05, bSeed: 5)
        let ids = [1, 17, 42, 99, 250, 7, 3, 55, 61, 80, 12, 9]
        m.zeroGradients()
        try m.forwardBackward([TrainingSequence(tokens: ids.map(Int32.init))])
        let served = try m.routes([TrainingSequence(tokens: ids.dropLast().map(Int32.init))])
        var withGradient = 0
        for p in m.trainableParameters() where p.name.contains(".experts.") && p.name.hasSuffix("lora_magnitude_vector") {
            if p.grad.array.contains(where: { $0 != 0 }) { withGradient += 1 }
        }
        XCTAssertEqual(withGradient, 3 * served.map { Set($0.chosen).count }.reduce(0, +), "gate, up and down of each expert that served a row")
        let adapter = try FamilyTests.logits(m, ids)
        try m.mergeActiveAdapter()
        let d = maxAbsDiff(try FamilyTests.logits(m, ids), adapter)
        print("[qwen2_moe DoRA on experts] merged logits within \(d) of the adapter's")
        XCTAssertLessThan(d, FamilyTests.logitTolerance)
    }

    /// Qwen-MoE's sparse layers: those whose (index + 1) is a multiple of decoder_sparse_step, less mlp_only_layers.
    func testSparseLayersFollowDecoderSparseStepAndMlpOnlyLayers() throws {
        let path = FamilyTests.dir("qwen3_moe") + "/hf/config.json"
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        json["num_hidden_layers"] = 6
        for (step, only, sparse) in [(1, [Int](), [0, 1, 2, 3, 4, 5]), (2, [], [1, 3, 5]), (3, [5], [2]), (1, [0, 4], [1, 2, 3, 5])] {
            json["decoder_sparse_step"] = step
            json["mlp_only_layers"] = only
            let c = try QwenMoEConfig(json: try JSONSerialization.data(withJSONObject: json), path: path, family: .qwen3)
            let spec = c.decoderSpec
            XCTAssertEqual((0..<6).filter { spec.moe(layer: $0) != nil }, sparse, "step \(step), mlp_only_layers \(only)")
        }
        json["mlp_only_layers"] = [6]
        XCTAssertThrowsError(try QwenMoEConfig(json: try JSONSerialization.data(withJSONObject: json), path: path, family: .qwen3)) {
            XCTAssertTrue("\($0)".contains("mlp_only_layers"), "\($0)")
        }
    }

    /// With output_router_logits (the tiny Qwen2-MoE: coefficient 0.02), a sequence objective's pass (preference
    /// training) reports coef × the load-balancing loss of its routing, which TRL adds to the objective's loss,
    /// and its gradient reaches the routers' adapters weighted by `auxLossScale`.
    func testPreferencePassCarriesTheLoadBalancingLoss() throws {
        let m = try XCTUnwrap(try LoadedModel.load(FamilyTests.dir("qwen2_moe") + "/hf").model as? DecoderModel)
        try m.attachRandomizedAdapter(r: 2, name: "p")
        let (e, _) = try FamilyTests.expected("qwen2_moe")
        let batch = e.batch.map { TrainingSequence(tokens: $0) }
        let expected = 0.02 * MoERouting.loadBalancingLoss(try m.routes(batch))
        func routerGradient(auxScale: Float) throws -> (Double, [Float]) {
            m.zeroGradients()
            var options = TrainingPassOptions()
            options.auxLossScale = auxScale
            // No objective gradient: what reaches the routers is the load-balancing loss's alone.
            let scores = try m.forwardBackward(batch, options: options) { lp in .perSequence(lp.sums.map { _ in 0 }) }
            let g = m.trainableParameters().filter { $0.name.contains(".mlp.gate.lora_B") }.flatMap { $0.grad.array }
            return (scores.auxiliaryLoss, g)
        }
        let (aux, full) = try routerGradient(auxScale: 1)
        XCTAssertEqual(aux, expected, accuracy: 1e-6 * expected)   // measured 2e-8 (the training pass's products against the evaluation's)
        XCTAssertTrue(full.contains { $0 != 0 }, "the load-balancing loss's gradient reaches the routers")
        let (_, half) = try routerGradient(auxScale: 0.5)
        XCTAssertLessThanOrEqual(relativeError(half.map { 2 * $0 }, full), 1e-6, "auxLossScale weighs it")
    }
}
