import FinchCore
import FinchQuant
import Foundation
import XCTest

/// A 4-bit linear with bf16 compute gives the same products whether this CPU multiplies bf16
/// natively or as f32 (the weight expanded straight to f32 and rounded to bf16 precision, the
/// input likewise): the same values, summed in another order.
final class BF16ComputeTests: XCTestCase {
    func testQuantizedBF16ComputeAgreesInBothModes() throws {
        let out = 96, inp = 128, m = 40
        var rng = SeededRandom(seed: 21)
        let w = Buffer<Float>(count: out * inp)
        for i in 0..<w.count { w[i] = (rng.nextUnit() - 0.5) * 0.2 }
        let layer = try QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true, computeDType: .bf16)
            .linear(outFeatures: out, inFeatures: inp, values: w)
        let x = (0..<(m * inp)).map { _ in rng.nextUnit() - 0.5 }, dy = (0..<(m * out)).map { _ in rng.nextUnit() - 0.5 }
        // Reference in double: bf16-rounded dequantized weight and inputs.
        let wq = layer.floatValues()
        func r(_ v: Float) -> Double { Double(BFloat16.toFloat(BFloat16.from(v))) }
        var y: [[Float]] = [], dx: [[Float]] = []
        for mode in [GEMM.BF16Compute.native, .f32] {
            let scratch = Scratch()
            var yo = [Float](repeating: 0, count: m * out), dxo = [Float](repeating: 0, count: m * inp)
            GEMM.withBF16Compute(mode) {
                layer.forward(y: &yo, x: x, rows: m, scratch: scratch)
                layer.backwardInput(dx: &dxo, dy: dy, rows: m, accumulate: false, scratch: scratch)
            }
            y.append(yo); dx.append(dxo)
        }
        for i in 0..<m {
            for j in 0..<out {
                var s = 0.0, a = 0.0
                for p in 0..<inp { let t = r(x[i * inp + p]) * r(wq[j * inp + p]); s += t; a += abs(t) }
                for v in y { XCTAssertEqual(Double(v[i * out + j]), s, accuracy: 1e-6 * a + 1e-12) }
            }
            for p in 0..<inp {
                var s = 0.0, a = 0.0
                for j in 0..<out { let t = r(dy[i * out + j]) * r(wq[j * inp + p]); s += t; a += abs(t) }
                for v in dx { XCTAssertEqual(Double(v[i * inp + p]), s, accuracy: 1e-6 * a + 1e-12) }
            }
        }
    }
}
