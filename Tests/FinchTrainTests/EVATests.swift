import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTrain
import FinchTestSupport
import XCTest

// Dimension letters: R a layer's rank, I its in features.

/// EVA (init_lora_weights "eva") against PEFT 0.21's `initialize_lora_eva_weights` on the tiny llama checkpoint
/// (Tests/Fixtures/eva from Scripts/fixtures/make_eva_reference.py, PEFT's incremental PCA made exact): the same
/// passes over the batches, the same ranks and alphas per layer (layers left at rank 0 dropped), and A's rows equal to
/// PEFT's up to sign (with whitening their norms give the singular values).
final class EVATests: XCTestCase {
    func batches() throws -> [[TrainingSequence]] {
        let data = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.required("eva/batches.json")))) as! [[[String: [Int]]]]
        return data.map { $0.map { TrainingSequence(tokens: $0["input_ids"]!.map(Int32.init), labels: $0["labels"]!.map(Int32.init)) } }
    }

    /// A run started with EVA: the adapter's targets, ranks and alphas as EVA left them, A's rows orthonormal (the
    /// components), B zero (the model unchanged at the start), and it trains and saves what loads back.
    func testRunStartsFromEVA() throws {
        var c = TrainingConfig()
        c.initLoRAWeights = .eva
        c.targetModules = ["all-linear"]; c.loraR = 4; c.loraDropout = 0; c.maxSteps = 2; c.batchSize = 4; c.loggingSteps = 0
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        let train = try batches().flatMap { $0 }
        let before = try lm.causal.logits(tokens: [train[0].tokens.map(Int.init)])
        let trainer = try Trainer(model: lm.model, config: c, train: train)
        XCTAssertNotNil(trainer.evaPasses)
        XCTAssertEqual(trainer.adapterConfig.initLoRAWeights, "eva")
        XCTAssertEqual(maxAbsDiff(before.flatMap { $0.flatMap { $0 } }, try lm.causal.logits(tokens: [train[0].tokens.map(Int.init)]).flatMap { $0.flatMap { $0 } }), 0)
        let adapter = lm.model.adapter(named: "default", config: trainer.adapterConfig)
        XCTAssertFalse(adapter.modules.isEmpty)
        for (name, m) in adapter.modules {
            XCTAssertEqual(m.rank, trainer.adapterConfig.rank(for: name))
            XCTAssertTrue(m.b.array.allSatisfy { $0 == 0 }, name)
            for p in 0..<m.rank { for q in 0..<m.rank {
                let dot = (0..<m.inFeatures).reduce(0.0) { $0 + Double(m.a[p * m.inFeatures + $1]) * Double(m.a[q * m.inFeatures + $1]) }
                XCTAssertEqual(dot, p == q ? 1 : 0, accuracy: 1e-5, name)
            } }
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("finch-eva-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = try trainer.train()
        try lm.model.adapter(named: "default", config: trainer.adapterConfig).save(to: out)
        let again = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        try again.loadAdapter(directory: out)
        let ids = [train[1].tokens.map(Int.init)]
        XCTAssertEqual(maxAbsDiff(try lm.causal.logits(tokens: ids).flatMap { $0.flatMap { $0 } },
                                  try again.causal.logits(tokens: ids).flatMap { $0.flatMap { $0 } }), 0)
        XCTAssertEqual(try AdapterConfig.load(path: out + "/adapter_config.json").eva, AdapterConfig.EVASettings())
    }

    func testEqualsPEFTsEVA() throws {
        let batches = try batches()
        var worst = ["direction": 0.0, "norm": 0.0]
        for (name, settings) in [("default", AdapterConfig.EVASettings(rho: 2, tau: 0.99)),
                                 ("whiten", AdapterConfig.EVASettings(rho: 1.5, tau: 0.95, useLabelMask: false, whiten: true))] {
            let dir = try Fixtures.required("eva/\(name)")
            let peft = try AdapterConfig.load(path: dir + "/adapter/adapter_config.json")
            let weights = try SafeTensorsFile(path: dir + "/adapter/adapter_model.safetensors")
            let want = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/passes.json"))) as! [String: Int]
            XCTAssertEqual(peft.eva, settings, name)

            let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
            var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear)
            config.eva = settings
            let causal = lm.causal
            let start = try lm.model.eva(config: config, batches: batches) { batch in
                _ = try causal.forward(batch.map { SequenceInput(tokens: $0.tokens.map(Int.init), cache: causal.makeCache(capacity: $0.tokens.count)) },
                                       logits: .last)
            }
            XCTAssertEqual(start.passes, want["passes"], name)
            let mine = start.adapterConfig(config, modules: lm.model.linearSlots.map(\.name))
            XCTAssertEqual(mine.rankPattern, peft.rankPattern, name)
            XCTAssertEqual(mine.alphaPattern, peft.alphaPattern, name)
            XCTAssertEqual(mine.targetModules, peft.targetModules, name)
            XCTAssertEqual(mine.initLoRAWeights, "eva")
            // PEFT whitens in place a view of the analysis that layers with equal inputs share, so each of them divides
            // it again: row k of such a group ends divided by √sₖ once per member whose rank exceeds k. Finch divides once.
            let groups = Dictionary(grouping: start.a.keys, by: { module in
                let layer = module.components(separatedBy: ".")[2]
                let kind = ["q_proj", "k_proj", "v_proj"].contains { module.hasSuffix($0) } ? "qkv"
                    : ["gate_proj", "up_proj"].contains { module.hasSuffix($0) } ? "gate-up" : module
                return layer + kind
            })
            for (module, a) in start.a {
                let theirs = try weights.floats("base_model.model.\(module).lora_A.weight")
                let rank = mine.rank(for: module), i = a.count / rank
                XCTAssertEqual(theirs.count, a.count, module)
                let group = groups.values.first { $0.contains(module) }!
                for k in 0..<rank {
                    let x = a[(k * i)..<((k + 1) * i)].map(Double.init), y = theirs[(k * i)..<((k + 1) * i)].map(Double.init)
                    let nx = x.map { $0 * $0 }.reduce(0, +).squareRoot(), ny = y.map { $0 * $0 }.reduce(0, +).squareRoot()
                    let cos = abs(zip(x, y).map { $0 * $1 }.reduce(0, +)) / (nx * ny)
                    worst["direction"] = max(worst["direction"]!, 1 - cos)
                    let divisions = settings.whiten ? group.filter { mine.rank(for: $0) > k }.count : 1
                    worst["norm"] = max(worst["norm"]!, abs(pow(nx, Double(divisions)) - ny) / ny)
                }
            }
            XCTAssertEqual(Set(start.a.keys), Set(peft.rankPattern.filter { $0.value > 0 }.keys).union(
                lm.model.linearSlots.map(\.name).filter { peft.targets($0) && peft.rankPattern[$0] == nil }), name)
        }
        print("[eva] worst against PEFT:", worst)
        // Measured: directions 7.3e-12 (1 − |cos|), norms 2.7e-7 (PEFT's float32 SVD); held to ~3×.
        XCTAssertLessThanOrEqual(worst["direction"]!, 3e-11)
        XCTAssertLessThanOrEqual(worst["norm"]!, 1e-6)
    }
}
