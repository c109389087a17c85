import FinchCore
import FinchFormats
import FinchTestSupport
@testable import FinchQuant
import XCTest

/// LLM.int8 against bitsandbytes 0.50.2 on the CPU (Tests/Fixtures/int8/linear.safetensors, from
/// Scripts/fixtures/make_int8_fixtures.py): the weight's int8 codes and row scales identical to
/// `Int8Params`' (`int8_vectorwise_quant` of the fp16 weight), and the product equal to
/// `Linear8bitLt`'s in eval mode (`MatMul8bitLt`: fp16-rounded activations, outlier columns at
/// |x| ≥ threshold kept in f32) with threshold 6 and 0, on a batch and on one row.
final class Int8Tests: XCTestCase {
    var f: SafeTensorsFile!
    override func setUpWithError() throws { f = try SafeTensorsFile(path: Fixtures.path("int8/linear.safetensors")) }

    func quantized(threshold: Float) throws -> Int8Tensor {
        let w = try f.floats("W")
        return w.withUnsafeBufferPointer { Int8Tensor.quantize($0, rows: 48, columns: 80, threshold: threshold) }
    }

    func testWeightCodesAndScalesAreBitsAndBytes() throws {
        let q = try quantized(threshold: 6)
        let cb = Array(try f.bytes("CB")).map { Int8(bitPattern: $0) }
        let differ = (0..<cb.count).filter { q.data[$0] != cb[$0] }
        XCTAssertEqual(differ.count, 0, "codes differ at \(differ.prefix(5).map { "\($0): \(q.data[$0]) vs \(cb[$0])" })")
        XCTAssertEqual(q.scb, try f.floats("SCB"))
        XCTAssertEqual(q.scb[9], 0, "the zero row")
        // Dequantized as bitsandbytes' backward does: CB · (SCB · (1/127)).
        let d = Buffer<Float>(count: 48 * 80)
        q.dequantize(into: d.pointer)
        XCTAssertEqual(d[3 * 80 + 5], Float(q.data[3 * 80 + 5]) * (q.scb[3] * Float(1.0 / 127.0)))
    }

    /// y = LLM.int8(x, W) + bias, as `Linear8bitLt.forward` in eval mode.
    func product(_ q: Int8Tensor, x: [Float], rows m: Int) throws -> [Float] {
        let bias = try f.floats("bias")
        let lin = LinearWeight(outFeatures: 48, inFeatures: 80, storage: .quantized(q, compute: .f32))
        var y = [Float](repeating: 0, count: m * 48)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            lin.forward(y: yp.baseAddress!, x: xp.baseAddress!, rows: m, scratch: Scratch())
        } }
        for r in 0..<m { for o in 0..<48 { y[r * 48 + o] += bias[o] } }
        return y
    }

    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        var num: Float = 0, den: Float = 0
        for (x, y) in zip(a, b) { num = max(num, abs(x - y)); den = max(den, abs(y)) }
        return num / den
    }

    func testProductIsLinear8bitLtOnTheCPU() throws {
        let x = try f.floats("X")
        for (threshold, key) in [(Float(6), "y_t6"), (0, "y_t0")] {
            let got = try product(try quantized(threshold: threshold), x: x, rows: 7)
            let e = relativeError(got, try f.floats(key))
            print("LLM.int8 threshold \(threshold) vs bitsandbytes: max |diff| / max |y| = \(e)")
            XCTAssertLessThanOrEqual(e, 1e-6, key)
        }
        // One row: its own outlier columns (the batch's differ).
        let row = try product(try quantized(threshold: 6), x: Array(x[160..<240]), rows: 1)
        XCTAssertLessThanOrEqual(relativeError(row, try f.floats("y_row_t6")), 1e-6)
        // The outlier decomposition matters here: threshold 0 is far from it.
        XCTAssertGreaterThan(relativeError(try f.floats("y_t0"), try f.floats("y_t6")), 1e-2)
    }

    func testSerializedLayoutRoundTrips() throws {
        let q = try quantized(threshold: 6)
        let entries = q.safeTensorsEntries(name: "layer.weight")
        XCTAssertEqual(entries.map(\.name), ["layer.weight", "layer.SCB", "layer.weight_format"])
        XCTAssertEqual(entries[0].dtype, .i8)
        XCTAssertEqual(entries[2].shape, [])
    }
}
