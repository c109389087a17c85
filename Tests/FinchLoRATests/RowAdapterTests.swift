import FinchCore
@testable import FinchLoRA
import XCTest

/// Per-row adapters (batched serving): each span of rows gets exactly what a call with that
/// span's adapter active (or none) gives.
final class RowAdapterTests: XCTestCase {
    let i = 40, o = 24

    func layer(dtype: WeightDType) -> LoRALinear {
        let base = LinearWeight(outFeatures: o, inFeatures: i, values: Buffer(rnd(o * i, 11)), dtype: dtype)
        let l = LoRALinear(base: base, name: "layer")
        l.add(LoRAModule(rank: 4, scaling: 0.5, a: Buffer(rnd(4 * i, 12)), b: Buffer(rnd(o * 4, 13)), magnitude: nil,
                         inFeatures: i, outFeatures: o), as: "lora")
        l.add(LoRAModule(rank: 2, scaling: 2, a: Buffer(rnd(2 * i, 14)), b: Buffer(rnd(o * 2, 15)),
                         magnitude: Buffer(rnd(o, 16).map { 1 + abs($0) }), inFeatures: i, outFeatures: o), as: "dora")
        return l
    }

    /// Rows of `spans` through the routed layer vs each span alone with its adapter active. With at
    /// most 4 rows per call both take the decode kernel, whose rows do not depend on each other,
    /// so the results must be identical.
    func check(dtype: WeightDType, accumulate: Bool) {
        let l = layer(dtype: dtype)
        let spans = [AdapterSpan(rows: 0..<1, adapter: "dora"), AdapterSpan(rows: 1..<2, adapter: nil),
                     AdapterSpan(rows: 2..<4, adapter: "lora")]
        let m = 4
        let x = rnd(m * i, 17), start = rnd(m * o, 18)
        let scratch = Scratch()
        var routed = start
        x.withUnsafeBufferPointer { xp in
            l.forward(y: &routed, x: xp.baseAddress!, xBF16: nil, rows: m, accumulate: accumulate, scratch: scratch,
                      context: PassContext(backend: CPUBackend.shared, rowAdapters: spans))
        }
        var alone = start
        for s in spans {
            l.active = s.adapter
            x.withUnsafeBufferPointer { xp in
                alone.withUnsafeMutableBufferPointer { yp in
                    l.forward(y: yp.baseAddress! + s.rows.lowerBound * o, x: xp.baseAddress! + s.rows.lowerBound * i, xBF16: nil,
                              rows: s.rows.count, accumulate: accumulate, scratch: scratch, context: .plain)
                }
            }
        }
        XCTAssertEqual(routed, alone, "dtype \(dtype), accumulate \(accumulate)")
        // And the adapters did something: the base alone differs on adapted rows.
        var plain = start
        l.active = nil
        x.withUnsafeBufferPointer { xp in
            l.forward(y: &plain, x: xp.baseAddress!, xBF16: nil, rows: m, accumulate: accumulate, scratch: scratch, context: .plain)
        }
        XCTAssertEqual(Array(plain[o..<(2 * o)]), Array(routed[o..<(2 * o)]))
        XCTAssertNotEqual(Array(plain[0..<o]), Array(routed[0..<o]))
        XCTAssertNotEqual(Array(plain[(2 * o)...]), Array(routed[(2 * o)...]))
    }

    func testRoutedRowsEqualEachAdapterAloneF32() { check(dtype: .f32, accumulate: false) }
    func testRoutedRowsEqualEachAdapterAloneF32Accumulating() { check(dtype: .f32, accumulate: true) }
    func testRoutedRowsEqualEachAdapterAloneBF16() { check(dtype: .bf16, accumulate: false) }
    func testRoutedRowsEqualEachAdapterAloneBF16Accumulating() { check(dtype: .bf16, accumulate: true) }

    /// Many rows (the GEMM path): the same up to the GEMM's rounding.
    func testManyRowsMatchWithinRounding() {
        let l = layer(dtype: .f32)
        let m = 40
        let spans = [AdapterSpan(rows: 0..<10, adapter: "lora"), AdapterSpan(rows: 10..<25, adapter: nil),
                     AdapterSpan(rows: 25..<40, adapter: "dora")]
        let x = rnd(m * i, 19)
        let scratch = Scratch()
        var routed = [Float](repeating: 0, count: m * o)
        l.forward(y: &routed, x: x, xBF16: nil, rows: m, accumulate: false, scratch: scratch,
                  context: PassContext(backend: CPUBackend.shared, rowAdapters: spans))
        var alone = [Float](repeating: 0, count: m * o)
        for s in spans {
            l.active = s.adapter
            var part = [Float](repeating: 0, count: s.rows.count * o)
            Array(x[(s.rows.lowerBound * i)..<(s.rows.upperBound * i)]).withUnsafeBufferPointer { xp in
                l.forward(y: &part, x: xp.baseAddress!, xBF16: nil, rows: s.rows.count, accumulate: false, scratch: scratch,
                          context: .plain)
            }
            alone.replaceSubrange((s.rows.lowerBound * o)..<(s.rows.upperBound * o), with: part)
        }
        for k in 0..<(m * o) { XCTAssertEqual(routed[k], alone[k], accuracy: 1e-5 * max(1, abs(alone[k]))) }
    }
}
