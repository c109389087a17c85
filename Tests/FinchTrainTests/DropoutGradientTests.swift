import FinchCore
import FinchLoRA
import FinchModels
import Foundation
import XCTest

/// Adapter gradients with dropout (plain LoRA and DoRA, whose dropout path differs: PEFT feeds
/// the dropped input to W as well) against central finite differences of the loss under the
/// same dropout masks, on the tiny fixture model; and the dropout mask's rate.
final class DropoutGradientTests: XCTestCase {
    func check(dora: Bool) throws {
        let m = try TrainerTests.tinyModel()
        var c = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear, loraDropout: 0.3, useDoRA: dora)
        c.initLoRAWeights = "gaussian"
        try m.attachRandomizedAdapter(config: c, seed: 2, bScale: 0.1, bSeed: 9)
        let data = TrainerTests.examples(3, vocab: m.vocabSize, seed: 4)
        let key: UInt64 = 12345
        m.zeroGradients()
        try m.forwardBackward(data, dropoutKey: key)
        let grads = Dictionary(uniqueKeysWithValues: m.trainableParameters().map { ($0.name, $0.grad.array) })
        // DoRA's weight norm is detached (PEFT): its cached value, from the unperturbed factors,
        // stays in place while A or B is nudged; nudging m refreshes m / norm (the norm is unchanged).
        func loss(refresh: Bool) throws -> Double {
            if refresh { m.adapterParametersChanged() }
            return try m.forwardBackward(data, dropoutKey: key).mean
        }
        var checked = 0
        for p in m.trainableParameters() where p.name.contains("layers.1.") || p.name.contains("layers.0.self_attn.q_proj") {
            let g = grads[p.name]!
            let refresh = !dora || p.name.hasSuffix("lora_magnitude_vector")
            // The entry with the largest gradient (finite differences are most accurate there).
            let i = g.indices.max { abs(g[$0]) < abs(g[$1]) }!
            let eps: Float = 1e-2 * max(1, abs(p.value[i]))
            let v = p.value[i]
            p.value[i] = v + eps; let up = try loss(refresh: refresh)
            p.value[i] = v - eps; let down = try loss(refresh: refresh)
            p.value[i] = v
            m.adapterParametersChanged()
            let numeric = (up - down) / Double(2 * eps)
            XCTAssertEqual(Double(g[i]), numeric, accuracy: 0.03 * abs(numeric) + 1e-5, "\(p.name)[\(i)]")
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, dora ? 24 : 16)
    }

    func testLoRAGradientsWithDropoutMatchFiniteDifferences() throws { try check(dora: false) }
    func testDoRAGradientsWithDropoutMatchFiniteDifferences() throws { try check(dora: true) }

    /// About 1 − p of the elements are kept, and the same key gives the same mask.
    func testDropoutKeepsOneMinusPAndIsRepeatable() {
        let n = 200_000
        let x = Buffer<Float>(Array(repeating: 1, count: n)), a = Buffer<Float>(count: n), b = Buffer<Float>(count: n)
        Dropout.apply(out: a.pointer, x: x.pointer, count: n, p: 0.25, key: 77)
        Dropout.apply(out: b.pointer, x: x.pointer, count: n, p: 0.25, key: 77)
        XCTAssertTrue(a.array == b.array)
        let kept = a.array.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.75, accuracy: 0.005)
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 })
        Dropout.apply(out: b.pointer, x: x.pointer, count: n, p: 0.25, key: 78)
        XCTAssertFalse(a.array == b.array, "another key should give another mask")
    }
}
