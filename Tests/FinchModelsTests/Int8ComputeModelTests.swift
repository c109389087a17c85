import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import XCTest

/// `--quant-compute int8` on real bases (SmolLM2 kept in its Q4_1 blocks, and dequantized to f32):
/// the loss of a LoRA batch and its gradients against the exact products of the same base.
/// Measured here (printed; the head's products in int8 too): loss 0.31% apart, gradients' cosine
/// 0.9956, norm ratio 0.988 (the same for both bases: their int8 forms are made from the same
/// values); bounds ~3x.
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
        XCTAssertEqual(normRatio, 1, accuracy: 0.035)
    }

    func testSmolLM2BlocksInt8() throws { try check(ggufBlocks: true) }
    func testSmolLM2F32Int8() throws { try check(ggufBlocks: false) }
}
