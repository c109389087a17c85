import FinchCore
import FinchFormats
@testable import FinchLoRA
import FinchModels
import FinchQuant
@testable import FinchTrain
import FinchTestSupport
import XCTest

/// `init_lora_weights: loftq` against PEFT 0.21's (Tests/Fixtures/loftq from
/// Scripts/fixtures/make_loftq_reference.py): tiny llama and qwen2, all-linear, r 4, lora_alpha 4 (scaling 1, where
/// PEFT's and Finch's agree), nf4 with 1 and 2 rounds and LLM.int8 with 1. The quantized base, A and B (up to the
/// sign of each rank's pair: LAPACK's float64 SVD against torch's float32 one) and the model's logits are PEFT's;
/// the LoftQ layer is closer to W than plain quantization, as PEFT's tests measure it, for every scaling; a run
/// trains, saves its quantized base and an adapter that loads on it, and what cannot work is refused.
final class LoftQTests: XCTestCase {
    static let runs: [(name: String, quantization: QuantizationConfig, bits: Int, iterations: Int)] = [
        ("nf4_iter1", QuantizationConfig(type: .nf4, blocksize: 64), 4, 1),
        ("nf4_iter2", QuantizationConfig(type: .nf4, blocksize: 64), 4, 2),
        ("int8_iter1", .int8(), 8, 1),
    ]
    /// Measured (max over both families' 14 linears and the three runs, relative to the largest value): A 3.5e-4,
    /// B 2.7e-4 per rank's pair (W − Q is noise-like: its singular values lie close together, and torch's float32
    /// SVD turns the pairs a little within them), B·A 3.0e-5, base 3.0e-7 (the same codes; LLM.int8's scale applied
    /// in another order), logits 1.0e-6 (nf4; PEFT's LoftQ model multiplies the dequantized base in f32, as Finch's
    /// nf4 products do), 0.022 with LLM.int8's integer products (Finch quantizes the activations too). Held to ~3×.
    static let tolerance: [String: Double] = ["A": 1e-3, "B": 1e-3, "B·A": 1e-4, "base": 1e-6, "logits": 3e-6,
                                              "logits int8 products": 0.07]

    func adapterConfig(alpha: Double = 4, bits: Int, iterations: Int) -> AdapterConfig {
        var c = AdapterConfig(r: 4, loraAlpha: alpha, targetModules: .allLinear)
        c.initLoRAWeights = "loftq"
        c.loftq = .init(bits: bits, iterations: iterations)
        return c
    }

    func tiny(_ family: String) throws -> DecoderModel {
        try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-\(family)/hf")).model as? DecoderModel)
    }

    func testLoftQEqualsPEFT() throws {
        _ = try Fixtures.required("loftq")
        var worst: [String: Double] = [:]
        func note(_ key: String, _ v: Double) { worst[key] = max(worst[key] ?? 0, v) }
        for family in ["llama", "qwen2"] {
            let f = try SafeTensorsFile(path: Fixtures.path("loftq/\(family).safetensors"))
            let ids = try f.floats("input_ids").map { Int($0) }
            for run in Self.runs {
                let model = try tiny(family)
                let c = adapterConfig(bits: run.bits, iterations: run.iterations)
                try model.createAdapter(config: c, seed: 1, quantization: run.quantization)
                let adapter = model.adapter(named: "default", config: c)
                XCTAssertEqual(adapter.modules.count, 14, family)
                for (module, m) in adapter.modules {
                    let (o, i, r) = (m.outFeatures, m.inFeatures, m.rank)
                    let a = try f.floats("\(run.name).\(module).lora_A"), b = try f.floats("\(run.name).\(module).lora_B")
                    for k in 0..<r {
                        let ga = Array(m.a.array[(k * i)..<((k + 1) * i)]), wa = Array(a[(k * i)..<((k + 1) * i)])
                        let sign: Float = zip(ga, wa).map { $0 * $1 }.reduce(0, +) < 0 ? -1 : 1
                        note("A", maxRelativeError(ga.map { $0 * sign }, wa))
                        note("B", maxRelativeError((0..<o).map { m.b[$0 * r + k] * sign }, (0..<o).map { b[$0 * r + k] }))
                    }
                    note("B·A", maxRelativeError(product(m.b.array, m.a.array, o, i, r), product(b, a, o, i, r)))
                    note("base", maxRelativeError(model.linearWeightValues(module), try f.floats("\(run.name).\(module).base")))
                    var quantized = false
                    model.forEachLoRALinear { l in if l.name == module, case .quantized = l.base.storage { quantized = true } }
                    XCTAssertTrue(quantized, "\(module): the base is held quantized")
                }
                // PEFT's LoftQ model multiplies the dequantized base in f32; Finch's LLM.int8 base multiplies in
                // integers (the activations quantized too), so its logits are compared apart.
                let logits = try model.logits(tokens: [ids])[0].flatMap { $0 }
                note(run.bits == 8 ? "logits int8 products" : "logits", maxRelativeError(logits, try f.floats("\(run.name).logits")))
            }
        }
        print("[loftq]", worst.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        XCTAssertEqual(Set(worst.keys), Set(Self.tolerance.keys))
        for (key, v) in worst { XCTAssertLessThanOrEqual(v, Self.tolerance[key]!, key) }
    }

    /// PEFT's LoftQ tests compare the quantized model's error against the unquantized one with and without
    /// LoftQ; here per layer (‖W − (Q + s·B·A)‖ against ‖W − NF4(W)‖, Frobenius) and on the logits (mean absolute
    /// error against the f32 model's), for scaling 1 (PEFT's) and 2 (lora_alpha 8, where PEFT's, which leaves the
    /// scaling out, is no better than plain NF4: its s·B·A holds twice the correction), 1 and 2 rounds.
    func testTheLoftQLayerIsCloserToWThanPlainQuantization() throws {
        let reference = try tiny("llama")
        let ids = [1, 17, 42, 99, 7, 250, 3, 64, 128, 5, 300, 11]
        let exact = try reference.logits(tokens: [ids])[0].flatMap { $0 }
        func mae(_ x: [Float]) -> Double { zip(x, exact).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(x.count) }
        let nf4 = QuantizationConfig(type: .nf4, blocksize: 64)
        let plain = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf"), quantization: nf4).model as? DecoderModel)
        let plainError = mae(try plain.logits(tokens: [ids])[0].flatMap { $0 })
        for (alpha, iterations) in [(4.0, 1), (4.0, 2), (8.0, 1), (8.0, 2)] {
            let model = try tiny("llama")
            let c = adapterConfig(alpha: alpha, bits: 4, iterations: iterations)
            try model.createAdapter(config: c, seed: 1, quantization: nf4)
            var layers = 0
            for (module, m) in model.adapter(named: "default", config: c).modules {
                let w = reference.linearWeightValues(module), q = model.linearWeightValues(module)
                let back = DecompositionInit.residual(q, a: m.a.array, b: m.b.array, out: m.outFeatures, in: m.inFeatures,
                                                      rank: m.rank, scaling: -Double(m.scaling))
                let plainQ = plain.linearWeightValues(module)
                XCTAssertLessThan(frobenius(back, w), 0.95 * frobenius(plainQ, w), "\(module), alpha \(alpha), \(iterations) round(s)")
                layers += 1
            }
            XCTAssertEqual(layers, 14)
            let e = mae(try model.logits(tokens: [ids])[0].flatMap { $0 })
            print("[loftq] logits MAE, alpha \(alpha), \(iterations) round(s): \(e) (plain nf4 \(plainError))")
            XCTAssertLessThan(e, plainError, "alpha \(alpha), \(iterations) round(s)")
        }
        // The other quantizations LoftQ takes: fp4, and nf4 with double-quantized scales (the ones Finch stores).
        for quantization in [QuantizationConfig(type: .fp4, blocksize: 64), QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true)] {
            let model = try tiny("llama")
            let c = adapterConfig(alpha: 8, bits: 4, iterations: 1)
            try model.createAdapter(config: c, seed: 1, quantization: quantization)
            for (module, m) in model.adapter(named: "default", config: c).modules {
                let w = reference.linearWeightValues(module), q = model.linearWeightValues(module)
                let back = DecompositionInit.residual(q, a: m.a.array, b: m.b.array, out: m.outFeatures, in: m.inFeatures,
                                                      rank: m.rank, scaling: -Double(m.scaling))
                let plainQ = try quantization.linear(outFeatures: m.outFeatures, inFeatures: m.inFeatures, values: Buffer(w)).floatValues().array
                XCTAssertLessThan(frobenius(back, w), 0.95 * frobenius(plainQ, w), "\(module), \(quantization.summary)")
            }
        }
    }

    /// 4 steps straight vs 2 then resumed from checkpoint-2: LoftQ runs again (the same base) and the adapter
    /// continues from the checkpoint's.
    func testResumeContinuesBitForBit() throws {
        var c = TrainingConfig()
        c.quantize = .nf4; c.initLoRAWeights = .loftq; c.loftqIter = 2
        c.loraR = 4; c.loraAlpha = 8; c.targetModules = ["all-linear"]; c.loraDropout = 0
        c.learningRate = 1e-2; c.lrScheduler = .constant; c.batchSize = 2; c.maxSteps = 4; c.loggingSteps = 0; c.maxGradNorm = 0
        let data = [[1, 5, 9, 14, 3, 7, 22, 8, 30, 2], [4, 4, 17, 6, 11, 29, 13, 2, 5, 19]].map { TrainingSequence(tokens: $0.map(Int32.init)) }
        let straight = try Trainer(model: try tiny("llama"), config: c, train: data).train().losses
        let dir = NSTemporaryDirectory() + "finch-loftq-resume-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var first = c; first.maxSteps = 2; first.saveSteps = 2
        try Trainer(model: try tiny("llama"), config: first, train: data, runDirectory: dir).train()
        first.maxSteps = 4
        let resumed = try Trainer(model: try tiny("llama"), config: first, train: data, runDirectory: dir)
            .train(resumeFrom: dir + "/checkpoint-2").losses
        XCTAssertEqual(resumed, straight)
        XCTAssertLessThan(straight.last!, straight.first!)
    }

    /// A run with `--quantize nf4 --init-lora-weights loftq`: the model loads unquantized and is quantized by
    /// LoftQ (every linear held in 4 bits), trains, saves the LoftQ base beside the adapter; the adapter
    /// (init_lora_weights true, loftq_config kept, base_model_name_or_path the saved base) loaded on that base
    /// gives the trained model's logits.
    func testARunSavesItsQuantizedBaseAndAnAdapterThatLoadsOnIt() throws {
        let dir = NSTemporaryDirectory() + "finch-loftq-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var c = TrainingConfig()
        c.model = try Fixtures.required("tiny-llama/hf"); c.data = Fixtures.repository.appendingPathComponent("Examples/brindlewick.jsonl").path
        c.quantize = .nf4; c.initLoRAWeights = .loftq; c.loftqIter = 2
        c.loraR = 4; c.loraAlpha = 8; c.targetModules = ["q_proj", "v_proj"]; c.loraDropout = 0
        c.learningRate = 1e-2; c.lrScheduler = .constant; c.batchSize = 2; c.maxSteps = 3; c.loggingSteps = 0; c.maxSeqLen = 256
        let run = try TrainingRun.prepare(config: c)
        let trainer = try run.trainer(runDirectory: dir)
        let model = try XCTUnwrap(run.model.model as? DecoderModel)
        for s in model.linearSlots {
            guard case .quantized(let q, _) = s.get().frozenWeight.storage else { return XCTFail("\(s.name) is not quantized") }
            XCTAssertTrue(q is FourBitTensor, s.name)
        }
        let summary = try trainer.train()
        XCTAssertLessThan(summary.losses.last!, summary.losses.first!)
        let ids = [1, 17, 42, 99, 7, 250, 3, 64]
        let trained = try model.logits(tokens: [ids])
        let saved = try AdapterConfig.load(path: dir + "/adapter_config.json")
        XCTAssertEqual(saved.initLoRAWeights, "true", "loading must not run LoftQ again")
        XCTAssertEqual(saved.loftq, .init(bits: 4, iterations: 2))
        let base = Trainer.loftqBase(runDirectory: dir)
        XCTAssertEqual(saved.baseModelNameOrPath, base)
        let reloaded = try XCTUnwrap(LoadedModel.load(base).model as? DecoderModel)
        try reloaded.loadAdapter(directory: dir)
        let e = maxRelativeError(try reloaded.logits(tokens: [ids]).flatMap { $0.flatMap { $0 } }, trained.flatMap { $0.flatMap { $0 } })
        print("[loftq] adapter on the saved LoftQ base vs the trained model: \(e)")
        XCTAssertLessThan(e, 1e-6)
    }

    func testWhatCannotWorkIsRefused() throws {
        var c = TrainingConfig()
        c.initLoRAWeights = .loftq
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--quantize nf4"), "\($0)") }
        c.quantize = .nf4
        XCTAssertNoThrow(try c.validate())
        c.loftqIter = 0
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("loftq_iter"), "\($0)") }
        c.loftqIter = 1; c.useDoRA = true
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("use_dora"), "\($0)") }
        c.useDoRA = false; c.method = .dpo
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("reference"), "\($0)") }

        let config = adapterConfig(bits: 4, iterations: 1)
        XCTAssertThrowsError(try tiny("llama").createAdapter(config: config, seed: 1)) {
            XCTAssertTrue("\($0)".contains("no quantization was given"), "\($0)")
        }
        XCTAssertThrowsError(try tiny("llama").createAdapter(config: config, seed: 1, quantization: .int8())) {
            XCTAssertTrue("\($0)".contains("loftq_bits 4"), "\($0)")
        }
        let quantized = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf"), quantization: QuantizationConfig()).model as? DecoderModel)
        XCTAssertThrowsError(try quantized.createAdapter(config: config, seed: 1, quantization: QuantizationConfig())) {
            XCTAssertTrue("\($0)".contains("quantized already"), "\($0)")
        }
    }
}

/// B·A [O, I] in float64.
private func product(_ b: [Float], _ a: [Float], _ o: Int, _ i: Int, _ r: Int) -> [Float] {
    (0..<(o * i)).map { e in Float((0..<r).map { Double(b[(e / i) * r + $0]) * Double(a[$0 * i + e % i]) }.reduce(0, +)) }
}

private func frobenius(_ x: [Float], _ y: [Float]) -> Double {
    var sum = 0.0
    for (a, b) in zip(x, y) { let d = Double(a) - Double(b); sum += d * d }
    return sum.squareRoot()
}


/// Adapters PEFT saved from an OLoRA / PiSSA / LoftQ start without converting them (Tests/Fixtures/lora-init-saved
/// from Scripts/fixtures/make_unconverted_adapters.py: the tiny LLaMA, factors moved off their start) give PEFT's
/// logits in Finch: OLoRA / PiSSA converted as they load (their start computed again from the base weights; the
/// base untouched), LoftQ as PEFT loads it (initialized again, the base rewritten, then the saved factors); a
/// pissa_niter_K one is refused (its start was a random draw).
final class UnconvertedAdapterTests: XCTestCase {
    /// Measured (max |Δ| / max |logit|): olora 6.9e-7, pissa 5.3e-6 (the residual base from LAPACK's float64 SVD
    /// against torch's float32 one), loftq 5.4e-7. Held to ~3×.
    static let tolerance: [String: Double] = ["olora": 2e-6, "pissa": 1.6e-5, "loftq": 1.6e-6]

    func testLoadsAsPEFTLoadsThem() throws {
        let dir = try Fixtures.required("lora-init-saved")
        let f = try SafeTensorsFile(path: dir + "/logits.safetensors")
        let ids = try f.floats("input_ids").map { Int($0) }
        let plain = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf")).model as? DecoderModel)
        let baseLogits = try plain.logits(tokens: [ids])
        for method in ["olora", "pissa", "loftq"] {
            let model = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf")).model as? DecoderModel)
            try model.loadAdapter(directory: dir + "/" + method)
            let logits = try model.logits(tokens: [ids])[0].flatMap { $0 }
            let e = maxRelativeError(logits, try f.floats("\(method).logits"))
            print("[unconverted \(method)] logits vs PEFT's: \(e)")
            XCTAssertLessThanOrEqual(e, Self.tolerance[method]!, method)
            let second = AdapterConfig(r: 2, loraAlpha: 4, targetModules: .names(["q_proj"]))
            if method == "loftq" {
                // PEFT's way: the base is now the LoftQ one; nothing else may rely on the base
                XCTAssertEqual(model.adapterConfigs["default"]?.initLoRAWeights, "loftq")
                XCTAssertThrowsError(try model.createAdapter(config: second, name: "second", seed: 1)) {
                    XCTAssertTrue("\($0)".contains("rewrote the base weights"), "\($0)")
                }
                XCTAssertThrowsError(try model.checkRowAdapters([AdapterSpan(rows: 0..<1, adapter: nil)], rows: 2)) {
                    XCTAssertTrue("\($0)".contains("rewrote the base weights"), "\($0)")
                }
                continue
            }
            // OLoRA / PiSSA: converted as it loads (rank 2r, a plain LoRA on the model's own base), so the base is
            // untouched: the adapter off gives the model, and another adapter may be loaded beside it
            XCTAssertEqual(model.adapterConfigs["default"]?.initLoRAWeights, "true")
            XCTAssertEqual(model.adapterConfigs["default"]?.r, 8)
            model.setActiveAdapter(nil)
            XCTAssertEqual(try model.logits(tokens: [ids]), baseLogits, "\(method): the base is the model's own")
            XCTAssertNoThrow(try model.createAdapter(config: second, name: "second", seed: 1))
            model.setActiveAdapter("default")
            // saved by Finch: converted, and right on the original weights
            let out = NSTemporaryDirectory() + "finch-unconverted-\(UUID().uuidString)"
            addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
            try model.adapter(named: "default", config: model.adapterConfigs["default"]!).save(to: out)
            let fresh = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf")).model as? DecoderModel)
            try fresh.loadAdapter(directory: out)
            XCTAssertEqual(fresh.adapterConfigs["default"]?.r, 8)
            XCTAssertLessThanOrEqual(maxRelativeError(try fresh.logits(tokens: [ids])[0].flatMap { $0 }, logits), 2e-6, method)
        }
        // a quantized base cannot give the start again
        let quantized = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf"), quantization: QuantizationConfig()).model as? DecoderModel)
        XCTAssertThrowsError(try quantized.loadAdapter(directory: dir + "/pissa")) { XCTAssertTrue("\($0)".contains("is quantized"), "\($0)") }
    }

    func testARandomizedPiSSAStartIsRefused() throws {
        let dir = try Fixtures.required("lora-init-saved")
        let copy = NSTemporaryDirectory() + "finch-unconverted-niter-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: copy) }
        try FileManager.default.copyItem(atPath: dir + "/pissa", toPath: copy)
        let configPath = copy + "/adapter_config.json"
        let text = try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(of: "\"pissa\"", with: "\"pissa_niter_4\"")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let model = try XCTUnwrap(LoadedModel.load(try Fixtures.required("tiny-llama/hf")).model as? DecoderModel)
        XCTAssertThrowsError(try model.loadAdapter(directory: copy)) {
            XCTAssertTrue("\($0)".contains("path_initial_model_for_weight_conversion"), "\($0)")
        }
    }
}
