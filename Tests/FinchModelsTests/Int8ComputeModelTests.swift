import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import XCTest

/// `--quant-compute int8` on real bases (SmolLM2 kept in its Q4_1 blocks, and dequantized to f32):
/// the loss of a LoRA batch and its gradients against the exact products of the same base.
/// Measured here (printed; the head's products in int8 too): loss 0.22% apart, gradients' cosine
/// 0.9954, norm ratio 0.961 (the same for both bases: their int8 forms are made from the same
/// values). The norm ratio moves with f32 rounding alone: the outlier columns' part summed in another
/// order gave 0.988 (oneDNN's f32 GEMM after the scale-back) and 1.006 (the portable fused loop), as
/// each layer's input is quantized again and a flipped rounding carries on; the bounds hold all three.
final class Int8ComputeModelTests: XCTestCase {
    func check(ggufBlocks: Bool) throws {
        let path = try Fixtures.smolLM2()
        let exact = try XCTUnwrap(try LoadedModel.load(path, ggufBlocks: ggufBlocks).model as? DecoderModel)
        let int8 = try XCTUnwrap(try LoadedModel.load(path, ggufBlocks: ggufBlocks).model as? DecoderModel)
        int8.useInt8Products()
        XCTAssertTrue(int8.weightSummary.contains("int8 products"), int8.weightSummary)
        for m in [exact, int8] { try m.attachRandomizedAdapter(r: 4, name: "a") }
        let batch = GGUFBlockModelTests.batch
        let le = try exact.forwardBackward(batch), li = try int8.forwardBackward(batch)
        let lossError = abs(li.sum - le.sum) / abs(le.sum)
        var dot = 0.0, ne = 0.0, ni = 0.0
        for (a, b) in zip(exact.trainableParameters(), int8.trainableParameters()) {
            for k in 0..<a.grad.count {
                dot += Double(a.grad[k]) * Double(b.grad[k]); ne += Double(a.grad[k] * a.grad[k]); ni += Double(b.grad[k] * b.grad[k])
            }
        }
        let cosine = dot / (ne.squareRoot() * ni.squareRoot()), normRatio = (ni / ne).squareRoot()
        print("[int8 compute] blocks \(ggufBlocks): loss \(le.sum / Double(le.count)) exact vs \(li.sum / Double(li.count)) int8 (relative \(lossError)); gradients cosine \(cosine), norm ratio \(normRatio)")
        XCTAssertLessThan(lossError, 0.012)
        XCTAssertGreaterThan(cosine, 0.987)
        XCTAssertEqual(normRatio, 1, accuracy: 0.08)
    }

    func testSmolLM2BlocksInt8() throws { try check(ggufBlocks: true) }

    /// Decoding one token at a time in int8 (the Q4_1 blocks' integer kernel, the head's int8 rows)
    /// next to the exact model, both fed the exact model's greedy tokens: the logits of every step
    /// close (measured here: worst cosine 0.9972 and the same argmax at all 24 steps) and not
    /// bit-equal (the integer kernels ran).
    func testDecodingInt8OnBlocks() throws {
        let path = try Fixtures.smolLM2()
        let exact = try LoadedModel.load(path, ggufBlocks: true).model
        let int8 = try LoadedModel.load(path, ggufBlocks: true, quantCompute: .int8).model
        let prompt = [1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 2, 198]
        let se = try exact.start([prompt], capacity: 32)[0], si = try int8.start([prompt], capacity: 32)[0]
        var le = try exact.step([StepInput(tokens: se.input, state: se.state)]), li = try int8.step([StepInput(tokens: si.input, state: si.state)])
        var worstCosine = 1.0, agree = 0, differs = false
        let steps = 24
        for _ in 0..<steps {
            let a = Array(le.row(0)), b = Array(li.row(0))
            var dot = 0.0, na = 0.0, nb = 0.0
            for k in a.indices { dot += Double(a[k]) * Double(b[k]); na += Double(a[k] * a[k]); nb += Double(b[k] * b[k]) }
            worstCosine = min(worstCosine, dot / (na.squareRoot() * nb.squareRoot()))
            let next = a.indices.max { a[$0] < a[$1] }!
            if b.indices.max(by: { b[$0] < b[$1] })! == next { agree += 1 }
            differs = differs || a != b
            le = try exact.step([StepInput(tokens: [next], state: se.state)])
            li = try int8.step([StepInput(tokens: [next], state: si.state)])
        }
        print("[int8 decode] worst cosine \(worstCosine), argmax agrees at \(agree) of \(steps) steps")
        XCTAssertTrue(differs, "the int8 decoding kernels did not run")
        XCTAssertGreaterThan(worstCosine, 0.991)
        XCTAssertGreaterThanOrEqual(agree, steps - 2)
    }
    func testSmolLM2F32Int8() throws { try check(ggufBlocks: false) }
}
