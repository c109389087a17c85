import FinchCore
import FinchFormats
import XCTest

// Dimension letters: O rows, I columns, M input rows.

/// A GGUF weight kept in its blocks (`GGUFBlockMatrix`) against the same tensor dequantized as it
/// loads: every kept type of quants.gguf (gguf-py's own bytes), expanded, rows reordered,
/// multiplied for decoding, rounded to bf16 and requantized.
final class GGUFBlockMatrixTests: XCTestCase {
    let file = try! GGUFFile(path: Fixtures.path("quants.gguf"))

    func random(_ n: Int, seed: UInt64) -> [Float] {
        var g = SplitMix64(seed: seed)
        return (0..<n).map { _ in Float(g.next() % 2_000_001) / 1_000_000 - 1 }
    }

    /// Every kept type: the expansion is the dequantization, bit for bit; a row order puts stored
    /// rows where it says; bf16 rounding is that of the expansion.
    func testExpansionIsTheDequantization() throws {
        var covered = Set<GGMLType>()
        for t in file.tensors where GGUFBlockMatrix.keptTypes.contains(t.type) && t.dimensions.count == 2 {
            let m = try GGUFBlockMatrix(file: file, tensor: t)
            let want = try file.dequantize(t)
            XCTAssertEqual([m.rows, m.columns], t.shape)
            XCTAssertEqual(m.byteCount, t.byteCount)
            var got = [Float](repeating: .nan, count: want.count)
            got.withUnsafeMutableBufferPointer { m.dequantize(into: $0.baseAddress!) }
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), t.name)
            got.withUnsafeMutableBufferPointer { m.dequantizeRoundedToBF16(into: $0.baseAddress!) }
            var rounded = want
            rounded.withUnsafeMutableBufferPointer { BFloat16.round($0.baseAddress!, to: $0.baseAddress!, count: want.count) }
            XCTAssertEqual(got.map(\.bitPattern), rounded.map(\.bitPattern), "\(t.name) rounded to bf16")
            let order = Array((0..<m.rows).reversed())
            let permuted = try GGUFBlockMatrix(file: file, tensor: t, rowOrder: order)
            got.withUnsafeMutableBufferPointer { permuted.dequantize(into: $0.baseAddress!) }
            for o in 0..<m.rows {
                XCTAssertEqual(Array(got[(o * m.columns)..<((o + 1) * m.columns)]),
                               Array(want[(order[o] * m.columns)..<((order[o] + 1) * m.columns)]), "\(t.name) row \(o)")
            }
            covered.insert(t.type)
        }
        XCTAssertEqual(covered, GGUFBlockMatrix.keptTypes)
    }

    /// Decoding products straight from the blocks equal the dequantized weight's, bit for bit
    /// (the same kernel sums each row in the same order), and float64 within 1e-5 relative.
    func testDecodingProductEqualsTheDequantizedWeights() throws {
        for t in file.tensors where GGUFBlockMatrix.keptTypes.contains(t.type) && t.dimensions.count == 2 {
            let m = try GGUFBlockMatrix(file: file, tensor: t, rowOrder: Array((0..<t.dimensions[1]).reversed()))
            let w = Buffer<Float>(uninitializedCount: m.rows * m.columns)
            m.dequantize(into: w.pointer)
            let dense = LinearWeight(outFeatures: m.rows, inFeatures: m.columns, storage: .f32(w))
            for rows in 1...LinearWeight.smallBatchRows {
                let x = random(rows * m.columns, seed: UInt64(rows))
                let y = Buffer<Float>(count: rows * m.rows), want = Buffer<Float>(count: rows * m.rows)
                XCTAssertTrue(m.multiplySmall(y: y.pointer, x: x, rows: rows, accumulate: false))
                dense.forward(y: want.pointer, x: x, rows: rows, scratch: Scratch())
                XCTAssertEqual(y.array.map(\.bitPattern), want.array.map(\.bitPattern), "\(t.name) M = \(rows)")
                _ = m.multiplySmall(y: y.pointer, x: x, rows: rows, accumulate: true)
                var worst = 0.0, scale = 0.0
                for r in 0..<rows {
                    for o in 0..<m.rows {
                        var s = 0.0
                        for i in 0..<m.columns { s += Double(x[r * m.columns + i]) * Double(w[o * m.columns + i]) }
                        worst = max(worst, abs(Double(y[r * m.rows + o]) - 2 * s)); scale = max(scale, abs(2 * s))
                    }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(t.name) M = \(rows) against float64")
            }
        }
    }

    /// Requantizing writes llama.cpp's reference blocks of the values given (a merge) and reports
    /// its rounding; a type Finch has no quantizer for is refused by name.
    func testRequantize() throws {
        for t in file.tensors where GGUFBlockMatrix.keptTypes.contains(t.type) && t.dimensions.count == 2 {
            let m = try GGUFBlockMatrix(file: file, tensor: t, rowOrder: Array((0..<t.dimensions[1]).reversed()))
            let values = random(m.rows * m.columns, seed: 7).map { $0 * 0.1 }
            guard m.canRequantize else {
                XCTAssertThrowsError(try m.requantize(from: values)) { XCTAssertTrue("\($0)".contains(t.type.name), "\($0)") }
                continue
            }
            let err = try m.requantize(from: values)
            let back = Buffer<Float>(uninitializedCount: values.count)
            m.dequantize(into: back.pointer)
            let measured = zip(back.array, values).map { abs($0 - $1) }.max()!
            XCTAssertEqual(err, measured, t.name)
            XCTAssertLessThan(err, 0.1 * 0.5, "\(t.name): a round trip keeps values to within a quantization step")
        }
    }

    /// Tensors that are not matrices of whole blocks, or of types not kept, are refused by name.
    func testRefusals() throws {
        for (name, words) in [("q4_0_1d", "matrix"), ("q8_0_3d", "matrix"), ("iq4_nl", "iq4_nl"), ("f16", "f16")] {
            let t = try XCTUnwrap(file.tensor(named: name))
            XCTAssertThrowsError(try GGUFBlockMatrix(file: file, tensor: t)) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
        }
        let t = try XCTUnwrap(file.tensor(named: "q8_0"))
        XCTAssertThrowsError(try GGUFBlockMatrix(file: file, tensor: t, rowOrder: [0, 0, 1, 2])) {
            XCTAssertTrue("\($0)".contains("permutation"), "\($0)")
        }
    }
}
