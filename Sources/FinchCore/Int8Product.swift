import CFinchKernels
import Foundation

// Dimension letters: M rows of activations, O output features, I input features.

/// Which products a frozen base weight runs: `exact` (in its own precision: f32, bf16, or its
/// quantized form expanded to f32), or `int8` (SwitchBack's integer products, see `Int8Product`).
public enum QuantCompute: String, Sendable, CaseIterable, Codable {
    case exact, int8
}

/// Integer products for a frozen weight W [O, I], the scheme of SwitchBack (Wortsman et al.,
/// 2023): W held as int8 with one scale per output feature (row), activations quantized to int8
/// with one scale per row as each product runs, int8 × int8 sums in int32 (oneDNN: VNNI where the
/// CPU has it), and the two scales applied in f32. The forward is y = x·Wᵀ; the input gradient
/// dx = dy·W multiplies the same int8 weight the other way, its per-row scales folded into dy
/// before dy is quantized. Rounding: to nearest (ties to even), symmetric, ±127.
public final class Int8Product: @unchecked Sendable {
    public let rows: Int, columns: Int
    /// [O, I] int8 weights and [O] their scales (max |W[o, :]| / 127).
    public let weight: Buffer<Int8>
    public let scale: Buffer<Float>

    /// The int8 form of `values` [O, I].
    public init(values: UnsafePointer<Float>, rows o: Int, columns i: Int) {
        rows = o; columns = i
        weight = Buffer(uninitializedCount: o * i); scale = Buffer(uninitializedCount: o)
        Self.quantizeRows(values, rows: o, columns: i, columnFactors: nil, into: weight.pointer, scales: scale.pointer)
    }

    /// Bytes held.
    public var byteCount: Int { weight.byteCount + scale.byteCount }

    /// q [R, C] = round(x ⊙ f / s[r]) with s[r] = max |x[r, :] ⊙ f| / 127 (f: per-column factors,
    /// or none); an all-zero row gets scale 1 and zeros.
    public static func quantizeRows(_ x: UnsafePointer<Float>, rows: Int, columns c: Int, columnFactors f: UnsafePointer<Float>?,
                                    into q: UnsafeMutablePointer<Int8>, scales s: UnsafeMutablePointer<Float>) {
        Parallel.forEachRange(rows, costPerItem: c * 2) { r in
            finch_quantize_rows_s8(x + r.lowerBound * c, Int32(r.count), Int32(c), f, q + r.lowerBound * c, s + r.lowerBound)
        }
    }

    /// y [M, O] (+)= x [M, I] · Wᵀ in integers.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                        scratch: Scratch) throws(CoreError) {
        let (xq, sx, c) = scratch.int8Operands(input: m * columns, rows: m, output: m * rows)
        Profile.measure(.int8Convert) { Self.quantizeRows(x, rows: m, columns: columns, columnFactors: nil, into: xq, scales: sx) }
        try GEMM.int8(m: m, n: rows, k: columns, a: xq, lda: columns, b: weight.pointer, ldb: columns, bTransposed: true,
                      c: c, ldc: rows, accumulate: false)
        Profile.measure(.int8Convert) { scaleBack(c, rows: m, columns: rows, rowScales: sx, columnScales: scale.pointer, into: y, accumulate: accumulate) }
    }

    /// dx [M, I] (+)= dy [M, O] · W in integers (dy ⊙ the weight's scales, quantized per row).
    public func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                              scratch: Scratch) throws(CoreError) {
        let (gq, sg, c) = scratch.int8Operands(input: m * rows, rows: m, output: m * columns)
        Profile.measure(.int8Convert) { Self.quantizeRows(dy, rows: m, columns: rows, columnFactors: scale.pointer, into: gq, scales: sg) }
        try GEMM.int8(m: m, n: columns, k: rows, a: gq, lda: rows, b: weight.pointer, ldb: columns, bTransposed: false,
                      c: c, ldc: columns, accumulate: false)
        Profile.measure(.int8Convert) { scaleBack(c, rows: m, columns: columns, rowScales: sg, columnScales: nil, into: dx, accumulate: accumulate) }
    }

    /// out [R, C] (+)= sums [R, C] · rowScales[r] (· columnScales[c]).
    private func scaleBack(_ sums: UnsafePointer<Int32>, rows: Int, columns c: Int, rowScales: UnsafePointer<Float>,
                           columnScales: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        Parallel.forEachRange(rows, costPerItem: c) { r in
            finch_scale_sums(sums + r.lowerBound * c, Int32(r.count), Int32(c), rowScales + r.lowerBound, columnScales,
                             out + r.lowerBound * c, accumulate ? 1 : 0)
        }
    }
}

extension Scratch {
    /// int8 activations [count], their row scales [rows] and the int32 sums [output] of one integer product.
    func int8Operands(input: Int, rows: Int, output: Int) -> (UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>) {
        let q = UnsafeMutableRawPointer(floats((input + 3) / 4, slot: Self.int8InputSlot)).bindMemory(to: Int8.self, capacity: input)
        let s = floats(rows, slot: Self.int8ScaleSlot)
        let c = UnsafeMutableRawPointer(floats(output, slot: Self.int8SumSlot)).bindMemory(to: Int32.self, capacity: output)
        return (q, s, c)
    }

    /// Float slots the integer products use (above those the LoRA layers use).
    static let int8InputSlot = 16, int8ScaleSlot = 17, int8SumSlot = 18
}
