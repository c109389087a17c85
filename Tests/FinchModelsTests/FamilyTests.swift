import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// Every family on the model seam against transformers and PEFT, on tiny random-weight
/// checkpoints written by transformers (Scripts/fixtures/make_tiny_families.py): per sequence
/// (one longer than the sliding window), logits within `logitTolerance` (measured 1.1e-5, Gemma 3;
/// the others ≤ 7e-6); greedy 32 tokens identical (decoded with the KV cache, across the window);
/// with PEFT's adapter on the family's default targets, logits within `logitTolerance` (measured
/// 9.8e-6) and every LoRA gradient within `gradientTolerance` relative by norm (measured 2.7e-6 over
/// oneDNN, oneDNN-AVX2 and OpenBLAS), loss within `lossTolerance` (1.2e-7); merged logits equal
/// adapter logits; an export reloads to the same logits; PEFT's adapter loaded and saved again by
/// Finch has the same tensors and values (a round trip; a Finch-*trained* adapter against a PEFT-trained one is
/// Tests/FinchTrainTests/PEFTTrainedAdapterTests.swift).
final class FamilyTests: XCTestCase {
    struct Expected: Decodable {
        let family: String
        let sequences: [[Int]]
        let greedy32: [Int]
        let peft_target_modules: [String]
        let batch: [[Int32]]
        let loss: Double
        /// Mixture-of-experts families: transformers' load-balancing loss over `batch`.
        let aux_loss: Double?
    }

    static let families = ["mistral", "qwen2", "qwen3", "gemma3", "gpt2", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
    static let moeFamilies = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
    /// ~3x the largest figures measured over the families (each printed by the tests).
    static let logitTolerance: Float = 3.5e-5, gradientTolerance = 8e-6, lossTolerance = 4e-7
    /// Linear layers of the model an adapter can wrap ("all-linear"): attention and MLP, or attention, the
    /// router, every expert's gate / up / down and the shared expert's (and its gate).
    static let linearCount = ["mistral": 14, "qwen2": 14, "qwen3": 14, "gemma3": 14, "gpt2": 8,
                              "mixtral": 2 * (4 + 1 + 4 * 3),
                              "qwen2_moe": 2 * (4 + 1 + 4 * 3 + 3 + 1) + 7,   // layer 1 dense
                              "qwen3_moe": 2 * (4 + 1 + 8 * 3),
                              "olmoe": 2 * (4 + 1 + 4 * 3)]

    static func dir(_ family: String) -> String { Fixtures.path("tiny-\(family)") }

    static func expected(_ family: String) throws -> (Expected, SafeTensorsFile) {
        let d = dir(family)
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
        return (e, try SafeTensorsFile(path: d + "/expected.safetensors"))
    }

    static func logits(_ m: any CausalLM, _ ids: [Int]) throws -> [Float] {
        try m.forward([SequenceInput(tokens: ids, cache: m.makeCache())], logits: .all).values.array
    }

    /// Checks the model's logits on every expected sequence against `<key>.seq<i>.logits` within `logitTolerance`;
    /// returns the largest difference.
    static func checkLogits(_ m: any CausalLM, _ e: Expected, _ ref: SafeTensorsFile, key: String, what: String) throws -> Float {
        var worst: Float = 0
        for (i, ids) in e.sequences.enumerated() {
            let d = maxAbsDiff(try logits(m, ids), try ref.floats("\(key).seq\(i).logits"))
            worst = max(worst, d)
            XCTAssertLessThan(d, logitTolerance, "\(what) seq\(i)")
        }
        return worst
    }

    func testLogitsMatchTransformers() throws {
        for f in Self.families {
            let (e, ref) = try Self.expected(f)
            let lm = try LoadedModel.load(Self.dir(f) + "/hf")
            XCTAssertEqual(lm.model.architecture, f)
            for (i, ids) in e.sequences.enumerated() {
                let want = try ref.floats("seq\(i).logits")
                let got = try Self.logits(lm.causal, ids)
                XCTAssertEqual(got.count, want.count, "\(f) seq\(i)")
                let d = maxAbsDiff(got, want)
                XCTAssertLessThan(d, Self.logitTolerance, "\(f) sequence \(i) (\(ids.count) tokens)")
                print("[family \(f)] seq\(i): logits within \(d) of transformers")
            }
            // A batch of all sequences at once computes what each computes alone.
            let batch = try lm.causal.forward(e.sequences.map { SequenceInput(tokens: $0, cache: lm.causal.makeCache()) },
                                             logits: .all)
            for (i, ids) in e.sequences.enumerated() {
                let rows = batch.rows[i]
                let got = Array(batch.values.array[(rows.lowerBound * lm.model.vocabSize)..<(rows.upperBound * lm.model.vocabSize)])
                XCTAssertLessThan(maxAbsDiff(got, try ref.floats("seq\(i).logits")), Self.logitTolerance, "\(f) batched seq\(i) (\(ids.count))")
            }
        }
    }

    func testGreedyMatchesTransformers() throws {
        for f in Self.families {
            let (e, _) = try Self.expected(f)
            let lm = try LoadedModel.load(Self.dir(f) + "/hf")
            let r = try Generator(lm).generate(promptTokens: [e.sequences[0]],
                                               options: GenerationOptions(maxNewTokens: 32, stopTokenIds: []))
            XCTAssertEqual(r[0].tokens, e.greedy32, f)
        }
    }

    func testPEFTAdapterLogitsGradientsAndMerge() throws {
        for f in Self.families {
            let (e, ref) = try Self.expected(f)
            let lm = try LoadedModel.load(Self.dir(f) + "/hf")
            let m = lm.model
            // PEFT's default targets for the family are the ones Finch names.
            XCTAssertEqual(m.defaultTargetModules.sorted(), e.peft_target_modules, f)
            try m.loadAdapter(directory: Self.dir(f) + "/peft")
            for (i, ids) in e.sequences.enumerated() {
                let d = maxAbsDiff(try Self.logits((m as! any CausalLM), ids), try ref.floats("adapter.seq\(i).logits"))
                XCTAssertLessThan(d, Self.logitTolerance, "\(f) adapter seq\(i)")
                print("[family \(f)] seq\(i): adapter logits within \(d) of PEFT")
            }
            m.zeroGradients()
            let loss = try m.forwardBackward(e.batch.map { TrainingSequence(tokens: $0) })
            XCTAssertEqual(loss.mean, e.loss, accuracy: Self.lossTolerance * e.loss, f)
            print("[family \(f)] loss within \(abs(loss.mean - e.loss) / e.loss) (relative) of PEFT")
            let params = m.trainableParameters()
            let layerCount = try XCTUnwrap(m as? DecoderModel).spec.numLayers
            XCTAssertEqual(params.count, 2 * layerCount * e.peft_target_modules.count, "\(f): A and B of each target in every layer")
            var worstGradient = 0.0
            defer { print("[family \(f)] LoRA gradients within \(worstGradient) (relative, by norm) of PEFT") }
            for p in params {
                let key = p.name + ".grad"
                guard ref.info(key) != nil else { XCTFail("\(f): no PEFT gradient named \(key)"); continue }
                let err = relativeError(p.grad.array, try ref.floats(key))
                worstGradient = max(worstGradient, err)
                XCTAssertLessThanOrEqual(err, Self.gradientTolerance, "\(f) \(key)")
            }
            // Gradient checkpointing recomputes the blocks to identical gradients.
            let plain = params.map { $0.grad.array }
            m.zeroGradients()
            try m.forwardBackward(e.batch.map { TrainingSequence(tokens: $0) }, checkpointing: true)
            XCTAssertTrue(plain == m.trainableParameters().map { $0.grad.array }, "\(f): checkpointing changed the gradients")

            // Round trip: PEFT's adapter, loaded and saved by Finch, comes back with the same tensors and
            // values (training against PEFT is PEFTTrainedAdapterTests).
            let scratch = NSTemporaryDirectory() + "finch-family-\(f)-\(UInt32.random(in: 0...UInt32.max))"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let config = try XCTUnwrap(m.adapterConfigs["default"])
            try m.adapter(named: "default", config: config).save(to: scratch + "/adapter")
            let ours = try SafeTensorsFile(path: scratch + "/adapter/adapter_model.safetensors")
            let theirs = try SafeTensorsFile(path: Self.dir(f) + "/peft/adapter_model.safetensors")
            XCTAssertEqual(ours.tensorNames.sorted(), theirs.tensorNames.sorted(), f)
            for n in theirs.tensorNames { XCTAssertEqual(try ours.floats(n), try theirs.floats(n), "\(f) \(n)") }

            // Merged logits equal adapter logits; the export reloads to the same logits.
            let withAdapter = try Self.logits((m as! any CausalLM), e.sequences[1])
            try m.mergeActiveAdapter()
            let merged = maxAbsDiff(try Self.logits((m as! any CausalLM), e.sequences[1]), withAdapter)
            XCTAssertLessThan(merged, Self.logitTolerance, "\(f) merged")
            try m.saveHuggingFace(to: scratch + "/merged", tokenizer: lm.tokenizer)
            let reloaded = try LoadedModel.load(scratch + "/merged")
            XCTAssertEqual(reloaded.model.architecture, f)
            let exported = maxAbsDiff(try Self.logits(reloaded.causal, e.sequences[1]), withAdapter)
            XCTAssertLessThan(exported, Self.logitTolerance, "\(f) exported")
            print("[family \(f)] merged logits within \(merged), exported within \(exported) of the adapter's")
        }
    }

    /// Mixture-of-experts families: every sparse layer's router probabilities (softmax of transformers' router
    /// logits) and choices for each sequence, and the load-balancing loss over the batch (measured: probabilities
    /// within 2.4e-7, aux loss 5.9e-8 relative; with output_router_logits (Qwen2-MoE, OLMoE) the training loss
    /// and gradients of testPEFTAdapterLogitsGradientsAndMerge include its coefficient times the loss).
    func testRoutersAndLoadBalancingLossMatchTransformers() throws {
        for f in Self.moeFamilies {
            let (e, ref) = try Self.expected(f)
            let m = try XCTUnwrap(try LoadedModel.load(Self.dir(f) + "/hf").model as? DecoderModel)
            var worst: Float = 0
            for (i, ids) in e.sequences.enumerated() {
                let routes = try m.routes([TrainingSequence(tokens: ids.map(Int32.init))])
                XCTAssertEqual(routes.count, m.layers.filter { $0.moe != nil }.count, f)
                for (l, r) in routes.enumerated() {
                    let logits = try ref.floats("seq\(i).router\(l).logits"), x = r.experts
                    XCTAssertEqual(logits.count, r.rows * x, "\(f) seq\(i) router \(l)")
                    for row in 0..<r.rows {
                        let z = logits[(row * x)..<((row + 1) * x)], top = z.max()!
                        let ex = z.map { expf($0 - top) }, sum = ex.reduce(0, +)
                        for j in 0..<x { worst = max(worst, abs(ex[j] / sum - r.probabilities[row * x + j])) }
                        // The chosen experts: transformers' top-k of the logits (the order of equal ones aside).
                        let theirs = Set(z.indices.sorted { z[$0] > z[$1] }.prefix(r.topK).map { $0 - z.startIndex })
                        XCTAssertEqual(Set(r.chosen[(row * r.topK)..<((row + 1) * r.topK)].map(Int.init)), theirs, "\(f) seq\(i) router \(l) row \(row)")
                    }
                }
            }
            XCTAssertLessThan(worst, 7.5e-7, "\(f) router probabilities")
            let aux = MoERouting.loadBalancingLoss(try m.routes(e.batch.map { TrainingSequence(tokens: $0) }))
            let theirs = try XCTUnwrap(e.aux_loss, f)
            XCTAssertEqual(aux, theirs, accuracy: 2e-7 * theirs, "\(f) load-balancing loss")
            print("[family \(f)] router probabilities within \(worst), load-balancing loss within \(abs(aux - theirs) / theirs) (relative) of transformers")
        }
    }

    /// Mixture-of-experts families: PEFT's LoRA on transformers 5's fused experts and the router
    /// (`target_parameters`, peft-experts/) loads onto the per-expert linears with PEFT's logits, and the
    /// gradients of its factors — each expert's share of the fused A and B gathered back, gate's and up's
    /// shares of the A they share summed — are PEFT's (measured: logits within 1.6e-6, gradients 2.2e-6 relative).
    func testPEFTFusedExpertAdapterLogitsAndGradients() throws {
        for f in Self.moeFamilies {
            let (e, ref) = try Self.expected(f)
            let m = try XCTUnwrap(try LoadedModel.load(Self.dir(f) + "/hf").model as? DecoderModel)
            try m.loadAdapter(directory: Self.dir(f) + "/peft-experts")
            let worstLogits = try Self.checkLogits(m, e, ref, key: "experts.adapter", what: "\(f) fused-experts adapter")
            m.zeroGradients()
            try m.forwardBackward(e.batch.map { TrainingSequence(tokens: $0) })
            var grads: [String: [Float]] = [:], shapes: [String: (Int, Int)] = [:]
            for p in m.trainableParameters() { grads[p.name] = p.grad.array }
            m.forEachLoRALinear { l in if let a = l.adapters["default"] { shapes[l.name] = (a.rank, l.inFeatures) } }
            let prefix = "base_model.model."
            let targets = try XCTUnwrap(m.fusedExpertTargets)
            var worst = 0.0, compared = 0
            for key in ref.tensorNames where key.hasPrefix("experts." + prefix) && key.hasSuffix(".grad") {
                let theirs = try ref.floats(key)
                let name = String(key.dropFirst("experts.".count).dropLast(".grad".count))
                var module = String(name.dropFirst(prefix.count)), kind = "lora_A"
                for k in ["lora_A", "lora_B"] where module.hasSuffix(".\(k).weight") { kind = k; module = String(module.dropLast(k.count + 8)) }
                let path = module.hasSuffix(".base_layer") ? String(module.dropLast(".base_layer".count)) : module
                let ours: [Float]
                if let block = targets.blocks[path] {
                    // Gather each expert's share back into PEFT's fused [R·E, in] / [out, R·E].
                    let shape = try XCTUnwrap(ref.info(key)).shape, x = block.experts
                    // gate_up's A reads the hidden size, down's the expert's (B's rows alone can agree: 2F = C).
                    let aShape = try XCTUnwrap(ref.info(key.replacingOccurrences(of: "lora_B", with: "lora_A"))).shape
                    let isGateUp = aShape[1] == block.hidden
                    let r = kind == "lora_A" ? shape[0] / x : shape[1] / x
                    var g = [Float](repeating: 0, count: shape[0] * shape[1])
                    for ex in 0..<x {
                        let parts = isGateUp ? [(block.gate[ex], 0), (block.up[ex], block.size)] : [(block.down[ex], 0)]
                        for (mod, first) in parts {
                            let pg = try XCTUnwrap(grads[prefix + mod + ".\(kind).weight"], mod)
                            if kind == "lora_A" {
                                for j in 0..<(r * shape[1]) { g[ex * r * shape[1] + j] += pg[j] }
                            } else {
                                let rows = pg.count / r
                                for o in 0..<rows { for j in 0..<r { g[(first + o) * shape[1] + j * x + ex] = pg[o * r + j] } }
                            }
                        }
                    }
                    ours = g
                } else {
                    let mod = targets.aliases[module] ?? module
                    ours = try XCTUnwrap(grads[prefix + mod + ".\(kind).weight"], "\(f): no gradient for \(mod)")
                }
                let err = relativeError(ours, theirs)
                worst = max(worst, err)
                compared += 1
                XCTAssertLessThanOrEqual(err, Self.gradientTolerance, "\(f) \(key)")
            }
            XCTAssertGreaterThanOrEqual(compared, 8 * targets.blocks.count, "\(f): q_proj, router and both fused parameters' A and B per sparse layer")
            print("[family \(f)] fused-experts adapter: logits within \(worstLogits), \(compared) gradients within \(worst) (relative) of PEFT")
        }
    }

    /// Mixtral, Qwen3-MoE, OLMoE: an adapter on every linear in the per-expert layout, as Finch writes it
    /// (finch-experts/), gives the logits PEFT on transformers 5 gives after converting it onto the fused experts
    /// (gate and up into one factor of rank 2r); Finch writes it back with the same tensors, and with lora_dropout 0
    /// although trained with dropout (PEFT's wrapper of fused parameters refuses any other). PEFT 0.21 converts no
    /// per-expert Qwen2-MoE adapter (the fixture script says why). Measured: logits within 2.1e-6.
    func testPerExpertAdapterLoadsAsPEFTConvertsIt() throws {
        for f in Self.moeFamilies where f != "qwen2_moe" {
            let (e, ref) = try Self.expected(f)
            let m = try XCTUnwrap(try LoadedModel.load(Self.dir(f) + "/hf").model as? DecoderModel)
            try m.loadAdapter(directory: Self.dir(f) + "/finch-experts")
            let worst = try Self.checkLogits(m, e, ref, key: "finch-experts", what: "\(f) per-expert adapter")
            var config = try XCTUnwrap(m.adapterConfigs["default"])
            config.loraDropout = 0.05
            let scratch = NSTemporaryDirectory() + "finch-experts-\(f)-\(UInt32.random(in: 0...UInt32.max))"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            try m.adapter(named: "default", config: config).save(to: scratch)
            let ours = try SafeTensorsFile(path: scratch + "/adapter_model.safetensors")
            let theirs = try SafeTensorsFile(path: Self.dir(f) + "/finch-experts/adapter_model.safetensors")
            XCTAssertEqual(ours.tensorNames.sorted(), theirs.tensorNames.sorted(), f)
            for n in theirs.tensorNames { XCTAssertEqual(try ours.floats(n), try theirs.floats(n), "\(f) \(n)") }
            let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch + "/adapter_config.json"))) as? [String: Any]
            XCTAssertEqual(written?["lora_dropout"] as? Double, 0, "\(f): an adapter on experts is written with lora_dropout 0")
            XCTAssertEqual(written?["target_modules"] as? String, "all-linear", f)
            print("[family \(f)] per-expert adapter: logits within \(worst) of PEFT's after its conversion")
        }
    }

    /// Mixtral and Qwen2-MoE checkpoints in transformers 5's fused expert layout (hf-fused/: `mlp.experts.gate_up_proj`,
    /// `mlp.experts.down_proj`, Mixtral's router as `mlp.gate`; Scripts/fixtures/make_fused_expert_checkpoints.py) load
    /// to the per-expert checkpoint's model: the same logits to the bit, transformers' within `logitTolerance`. A fused
    /// tensor of another shape is an error naming it, and so is a layer with one of the two fused tensors only.
    func testFusedExpertCheckpointLoads() throws {
        for f in ["mixtral", "qwen2_moe"] {
            let (e, ref) = try Self.expected(f)
            let fused = try LoadedModel.load(Self.dir(f) + "/hf-fused"), plain = try LoadedModel.load(Self.dir(f) + "/hf")
            for (i, ids) in e.sequences.enumerated() {
                let ours = try Self.logits(fused.causal, ids)
                XCTAssertEqual(ours, try Self.logits(plain.causal, ids), "\(f) seq\(i): fused and per-expert checkpoints differ")
                XCTAssertLessThan(maxAbsDiff(ours, try ref.floats("seq\(i).logits")), Self.logitTolerance, "\(f) seq\(i)")
            }
            // Broken copies: layer 0's down_proj one column short, then missing.
            let file = try SafeTensorsFile(path: Self.dir(f) + "/hf-fused/model.safetensors")
            let down = "model.layers.0.mlp.experts.down_proj"
            for broken in ["shape", "missing"] {
                let scratch = NSTemporaryDirectory() + "finch-fused-\(f)-\(UInt32.random(in: 0...UInt32.max))"
                defer { try? FileManager.default.removeItem(atPath: scratch) }
                try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
                for c in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
                    try FileManager.default.copyItem(atPath: Self.dir(f) + "/hf-fused/" + c, toPath: scratch + "/" + c)
                }
                var entries: [SafeTensorsWriter.Entry] = []
                for n in file.tensorNames {
                    var shape = try XCTUnwrap(file.info(n)).shape, values = try file.floats(n)
                    if n == down {
                        if broken == "missing" { continue }
                        shape[2] -= 1
                        values = Array(values.prefix(shape.reduce(1, *)))
                    }
                    entries.append(.float32(name: n, shape: shape, values: values))
                }
                try SafeTensorsWriter.write(entries, to: scratch + "/model.safetensors")
                XCTAssertThrowsError(try LoadedModel.load(scratch)) { error in
                    XCTAssertTrue("\(error)".contains(down), "\(f) \(broken): \(error)")
                }
            }
            print("[family \(f)] the fused-expert checkpoint loads to the per-expert one's logits")
        }
    }

    /// "all-linear" and the family default resolve to the family's module names.
    func testTargetModulesResolve() throws {
        for f in Self.families {
            let lm = try LoadedModel.load(Self.dir(f) + "/hf")
            var c = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(lm.model.defaultTargetModules))
            let defaults = try lm.model.createAdapter(config: c, name: "defaults", seed: 1)
            let peft = try LoRAAdapter.load(directory: Self.dir(f) + "/peft", linears: lm.model.linearModules)
            XCTAssertEqual(defaults.modules.keys.sorted(), peft.modules.keys.sorted(), "\(f): PEFT's default targets")
            XCTAssertEqual(defaults.config.fanInFanOut, peft.config.fanInFanOut, f)
            c.targetModules = .allLinear
            let all = try lm.model.createAdapter(config: c, name: "all", seed: 1)
            XCTAssertEqual(all.modules.count, Self.linearCount[f]!, f)
        }
    }
}
