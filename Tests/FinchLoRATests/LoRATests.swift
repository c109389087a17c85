import FinchCore
import FinchFormats
@testable import FinchLoRA
import Foundation
import XCTest

func rnd(_ n: Int, _ seed: UInt64, scale: Float = 1) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(Double(s >> 11) / Double(1 << 53) * 2 - 1) * scale
    }
}

final class AdapterConfigTests: XCTestCase {
    func testTargetsFollowPEFT() {
        var c = AdapterConfig(r: 8, loraAlpha: 16, targetModules: .names(["q_proj", "v_proj"]))
        XCTAssertTrue(c.targets("model.layers.0.self_attn.q_proj"))
        XCTAssertFalse(c.targets("model.layers.0.self_attn.k_proj"))
        XCTAssertFalse(c.targets("model.layers.0.self_attn.xq_proj"))
        c.layersToTransform = [1]
        XCTAssertFalse(c.targets("model.layers.0.self_attn.q_proj"))
        XCTAssertTrue(c.targets("model.layers.1.self_attn.q_proj"))
        let re = AdapterConfig(r: 8, loraAlpha: 16, targetModules: .regex(#".*\.(q|k)_proj"#))
        XCTAssertTrue(re.targets("model.layers.3.self_attn.k_proj"))
        XCTAssertFalse(re.targets("model.layers.3.self_attn.v_proj"))
        let all = AdapterConfig(r: 8, loraAlpha: 16, targetModules: .allLinear)
        XCTAssertTrue(all.targets("model.layers.3.mlp.down_proj"))
        XCTAssertFalse(all.targets("lm_head", isOutputHead: true))
    }

    func testScalingAndPatterns() {
        var c = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear)
        XCTAssertEqual(c.scaling(for: "x.q_proj"), 2)
        c.useRSLoRA = true
        XCTAssertEqual(c.scaling(for: "x.q_proj"), 4)   // 8 / sqrt(4)
        c.useRSLoRA = false
        c.rankPattern = ["q_proj": 16]
        c.alphaPattern = ["q_proj": 32]
        XCTAssertEqual(c.rank(for: "model.layers.0.self_attn.q_proj"), 16)
        XCTAssertEqual(c.scaling(for: "model.layers.0.self_attn.q_proj"), 2)
        XCTAssertEqual(c.rank(for: "model.layers.0.self_attn.v_proj"), 4)
    }

    func testReadsPEFTConfigAndRoundTrips() throws {
        // PEFT's own adapter_config.json (Tests/Fixtures/smollm2/peft, Scripts/fixtures/make_peft_goldens.py).
        let ref = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/smollm2/peft").path
        let c = try AdapterConfig.load(path: ref + "/lora_qv_rslora_r4/adapter_config.json")
        XCTAssertEqual(c.r, 4)
        XCTAssertEqual(c.loraAlpha, 8)
        XCTAssertTrue(c.useRSLoRA)
        XCTAssertEqual(c.targetModules, .names(["q_proj", "v_proj"]))   // as the fixture script writes them (sorted)
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try c.write(to: tmp)
        XCTAssertEqual(try AdapterConfig.load(path: tmp), c)
    }

    /// PEFT's older pickle format (adapter_model.bin) is named and refused, never unpickled.
    func testPickledAdapterIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pickled-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "peft_type": "LORA"}"#
            .write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/adapter_model.bin", contents: Data([0x80, 0x02, 0x7d, 0x71]))
        XCTAssertThrowsError(try LoRAAdapter.load(directory: dir, linears: ["q_proj": (8, 8)])) { e in
            guard case FormatError.pickleCheckpoint(let path) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(path, dir + "/adapter_model.bin")
        }
    }

    func testBadConfigsSayWhatIsWrong() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        for (json, needle) in [(#"{"r": 0, "lora_alpha": 8, "target_modules": ["q_proj"]}"#, "r must be positive"),
                               (#"{"r": 4, "lora_alpha": 8}"#, "target_modules"),
                               (#"{"r": 4, "lora_alpha": 8, "target_modules": ["q"], "peft_type": "IA3"}"#, "IA3")] {
            try json.write(toFile: tmp, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try AdapterConfig.load(path: tmp)) { e in
                XCTAssertTrue("\(e)".contains(needle) && "\(e)".contains(tmp), "\(e)")
            }
        }
    }
}

final class LoRALinearTests: XCTestCase {
    let m = 5, i = 12, o = 7, r = 3

    func make(dora: Bool, dtype: WeightDType = .f32) -> (LoRALinear, [Float], LoRAModule) {
        let w = rnd(o * i, 1)
        let base = LinearWeight(outFeatures: o, inFeatures: i, values: Buffer(w), dtype: dtype)
        let mod = LoRAModule(rank: r, scaling: 0.5, a: Buffer(rnd(r * i, 2)), b: Buffer(rnd(o * r, 3)),
                             magnitude: dora ? Buffer(rnd(o, 4).map { 1 + abs($0) }) : nil, inFeatures: i, outFeatures: o)
        let l = LoRALinear(base: base, name: "layer")
        l.add(mod, as: "a")
        l.active = "a"
        return (l, w, mod)
    }

    /// A base multiplying in integers keeps an int8 form of its weights: merging and unmerging an
    /// adapter make it again from the new weights.
    func testMergeRemakesTheInt8Form() throws {
        let (l, w, _) = make(dora: false)
        l.base.useInt8Products()
        try l.merge()
        let merged = l.base.floatValues()
        XCTAssertEqual(l.base.int8!.weight.array, Int8Product(values: merged.pointer, rows: o, columns: i).weight.array)
        try l.unmerge()
        let restored = Int8Product(values: w, rows: o, columns: i)
        XCTAssertEqual(l.base.int8!.scale.array.count, restored.scale.array.count)
        for (a, b) in zip(l.base.int8!.scale.array, restored.scale.array) { XCTAssertEqual(a, b, accuracy: 1e-6 * abs(b)) }
    }

    /// Naive PEFT math in Double: W' = W + s·B·A; DoRA scales row o by m_o / ‖W'_o‖.
    func reference(_ w: [Float], _ mod: LoRAModule, x: [Float], dora: Bool) -> [Double] {
        var wp = [Double](repeating: 0, count: o * i)
        for oo in 0..<o { for c in 0..<i {
            var d = 0.0
            for rr in 0..<r { d += Double(mod.b[oo * r + rr]) * Double(mod.a[rr * i + c]) }
            wp[oo * i + c] = Double(w[oo * i + c]) + Double(mod.scaling) * d
        } }
        var y = [Double](repeating: 0, count: m * o)
        for row in 0..<m { for oo in 0..<o {
            var s = 0.0
            for c in 0..<i { s += wp[oo * i + c] * Double(x[row * i + c]) }
            if dora {
                let norm = (0..<i).reduce(0.0) { $0 + wp[oo * i + $1] * wp[oo * i + $1] }.squareRoot()
                s *= Double(mod.magnitude![oo]) / norm
            }
            y[row * o + oo] = s
        } }
        return y
    }

    func check(dora: Bool) {
        let (l, w, mod) = make(dora: dora)
        let x = rnd(m * i, 9)
        let ref = reference(w, mod, x: x, dora: dora)
        let y = Buffer<Float>(count: m * o)
        l.forward(y: y.pointer, x: x, xBF16: nil, rows: m, accumulate: false, scratch: Scratch(), context: .plain)
        for k in 0..<(m * o) { XCTAssertEqual(Double(y[k]), ref[k], accuracy: 1e-5) }
        // accumulate adds the layer's output onto y
        l.forward(y: y.pointer, x: x, xBF16: nil, rows: m, accumulate: true, scratch: Scratch(), context: .plain)
        for k in 0..<(m * o) { XCTAssertEqual(Double(y[k]), 2 * ref[k], accuracy: 2e-5) }
        // merged: same output from the base weight alone; unmerge restores W
        try! l.merge()
        l.forward(y: y.pointer, x: x, xBF16: nil, rows: m, accumulate: false, scratch: Scratch(), context: .plain)
        for k in 0..<(m * o) { XCTAssertEqual(Double(y[k]), ref[k], accuracy: 1e-5) }
        try! l.unmerge()
        for (a, b) in zip(l.base.floatValues().array, w) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // disabled: the base layer alone
        l.active = nil
        l.forward(y: y.pointer, x: x, xBF16: nil, rows: m, accumulate: false, scratch: Scratch(), context: .plain)
        let base = Buffer<Float>(count: m * o)
        l.base.forward(y: base.pointer, x: x, rows: m, scratch: Scratch())
        XCTAssertEqual(y.array, base.array)
    }

    func testLoRAMatchesNaive() { check(dora: false) }
    func testDoRAMatchesNaive() { check(dora: true) }

    func testMergingADifferentAdapterWhileOneIsMergedIsRefused() throws {
        let (l, _, mod) = make(dora: false)
        l.add(mod, as: "b")
        try l.merge()
        l.active = "b"
        XCTAssertThrowsError(try l.merge())
    }
}
