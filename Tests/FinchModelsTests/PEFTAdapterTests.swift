import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import Foundation
import FinchTestSupport
import XCTest

/// PEFT adapters from Tests/Fixtures/smollm2/peft (Scripts/fixtures/make_peft_goldens.py) on SmolLM2 (f32): Finch's logits with each
/// adapter equal PEFT's (max |Δlogit| measured 1.6e-4 DoRA, 1.4e-4 LoRA all-linear, 9.4e-5 rsLoRA;
/// tolerance 5e-4, ~3× the worst); adapters switch, disable, merge, unmerge, save and reload.
final class PEFTAdapterTests: XCTestCase {
    static let names = ["lora_all_linear_r8", "lora_qv_rslora_r4", "dora_qv_r4"]
    struct Golden: Decodable { let chat_ids: [Int]; let merged_vs_adapter_max_abs: Double }

    /// A model of its own (adapters change it), with the base logits computed before any adapter.
    nonisolated(unsafe) static var shared: (LoadedModel, [Float])?
    static func setup() throws -> (LoadedModel, [Float]) {
        if let s = shared { return s }
        let lm = try LoadedModel.load(try Fixtures.smolLM2(), dtype: .f32)
        let base = try logits(lm, try golden(names[0]).chat_ids)
        for n in names { try lm.model.loadAdapter(directory: try dir(n), name: n) }
        shared = (lm, base)
        return (lm, base)
    }

    /// Tests/Fixtures/smollm2/peft/<n> (committed; a missing one is a failure).
    static func dir(_ n: String) throws -> String { try Fixtures.required("smollm2/peft/" + n) }
    static func golden(_ n: String) throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: try dir(n) + "/golden.json")))
    }
    static func logits(_ lm: LoadedModel, _ ids: [Int]) throws -> [Float] {
        try lm.causal.forward([SequenceInput(tokens: ids, cache: lm.causal.makeCache())], logits: .all).values.array
    }

    func testEachAdapterMatchesPEFTLogits() throws {
        let (lm, _) = try Self.setup()
        XCTAssertEqual(lm.model.adapterNames, Self.names.sorted())
        for n in Self.names {
            lm.model.setActiveAdapter(n)
            XCTAssertEqual(lm.model.activeAdapter, n)
            let g = try Self.golden(n)
            let ref = try SafeTensorsFile(path: try Self.dir(n) + "/golden.safetensors").floats("chat.logits.adapter")
            let got = try Self.logits(lm, g.chat_ids)
            let d = maxAbsDiff(got, ref)
            print("[\(n)] max |logit diff| vs PEFT: \(d)")
            XCTAssertLessThanOrEqual(d, 5e-4, n)
        }
    }

    func testDisabledAdapterGivesTheBaseModelExactly() throws {
        let (lm, base) = try Self.setup()
        lm.model.setActiveAdapter(nil)
        let off = try Self.logits(lm, try Self.golden(Self.names[0]).chat_ids)
        XCTAssertTrue(off == base, "disabled adapter changed logits by up to \(maxAbsDiff(off, base))")
        lm.model.setActiveAdapter(Self.names[0])
        XCTAssertGreaterThan(maxAbsDiff(try Self.logits(lm, try Self.golden(Self.names[0]).chat_ids), base), 0.01)
    }

    func testMergeEqualsAdapterAndUnmergeRestoresBase() throws {
        let (lm, base) = try Self.setup()
        for n in Self.names {
            lm.model.setActiveAdapter(n)
            let ids = try Self.golden(n).chat_ids
            let withAdapter = try Self.logits(lm, ids)
            try lm.model.mergeActiveAdapter()
            let merged = try Self.logits(lm, ids)
            let d = maxAbsDiff(merged, withAdapter)
            print("[\(n)] merged vs adapter max |diff|: \(d) (PEFT: \(try Self.golden(n).merged_vs_adapter_max_abs))")
            // measured 2.7e-4 (LoRA all-linear; PEFT's own merge moves its logits by 1.5e-4), 1.2e-4, 1.1e-4
            XCTAssertLessThan(d, 8e-4, n)
            try lm.model.unmergeAdapter()
            lm.model.setActiveAdapter(nil)
            let restored = maxAbsDiff(try Self.logits(lm, ids), base)
            print("[\(n)] unmerged vs base max |diff|: \(restored)")
            // measured ≤ 1.4e-4 (subtracting B·A back leaves rounding of W + B·A in f32)
            XCTAssertLessThan(restored, 4e-4, "\(n): unmerge restores the base")
        }
        lm.model.setActiveAdapter(Self.names[0])
    }

    func testSavedAdapterReloadsIdenticallyWithPEFTKeys() throws {
        let (lm, _) = try Self.setup()
        let n = Self.names[2]   // DoRA: A, B and magnitudes
        let adapter = try LoRAAdapter.load(directory: try Self.dir(n), linears: lm.model.linearModules)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("finch-adapter-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try adapter.save(to: out)
        let theirs = try SafeTensorsFile(path: try Self.dir(n) + "/adapter_model.safetensors")
        let ours = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        XCTAssertEqual(Set(ours.tensorNames), Set(theirs.tensorNames))
        for t in theirs.tensorNames { XCTAssertTrue(try ours.floats(t) == theirs.floats(t), t) }
        let cfg = try AdapterConfig.load(path: out + "/adapter_config.json")
        XCTAssertEqual(cfg, adapter.config)
        try lm.model.loadAdapter(directory: out, name: "reloaded")
        lm.model.setActiveAdapter("reloaded")
        let ids = try Self.golden(n).chat_ids
        let a = try Self.logits(lm, ids)
        lm.model.setActiveAdapter(n)
        let b = try Self.logits(lm, ids)
        XCTAssertTrue(a == b, "reloaded adapter differs by up to \(maxAbsDiff(a, b))")
    }

    func testAdapterForAnotherModelIsRejected() throws {
        let tiny = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        XCTAssertThrowsError(try tiny.model.loadAdapter(directory: try Self.dir(Self.names[0]))) { e in
            XCTAssertTrue("\(e)".contains("adapter_model.safetensors"), "\(e)")
            XCTAssertTrue("\(e)".contains("another model"), "\(e)")
        }
        XCTAssertThrowsError(try tiny.model.loadAdapter(directory: "/no/such/adapter")) { e in
            XCTAssertTrue("\(e)".contains("adapter_config.json"), "\(e)")
        }
    }
}
