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

    /// y [M, O] (+)= x [M, I] · Wᵀ for decoding (M ≤ `LinearWeight.smallBatchRows`): x quantized in
    /// groups of 32 with a scale each (`QuantizedActivations`), the int8 weight read once (a quarter
    /// of an f32 weight's bytes) by the integer block kernel. False when I is not a multiple of 32.
    public func forwardSmall(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        QuantizedActivations.with(x, rows: m, columns: columns) { q in
            finch_block_gemv_q8(FINCH_BLOCK_S8_ROWS, weight.pointer, columns, nil, scale.pointer, Int32(m), Int32(rows),
                                Int32(columns), q.values, q.scales, q.sums, y, rows, accumulate ? 1 : 0) != 0
        } ?? false
    }

    /// The int8 form of a weight too large to expand whole: `fill(range, out)` writes rows
    /// `range` as f32 into `out` [range.count, I], `rowsPerChunk` rows at a time.
    public init(rows o: Int, columns i: Int, rowsPerChunk: Int,
                fill: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        rows = o; columns = i
        weight = Buffer(uninitializedCount: o * i); scale = Buffer(uninitializedCount: o)
        let chunk = Buffer<Float>(uninitializedCount: min(o, rowsPerChunk) * i)
        for r0 in stride(from: 0, to: o, by: rowsPerChunk) {
            let rc = min(rowsPerChunk, o - r0)
            fill(r0..<(r0 + rc), chunk.pointer)
            Self.quantizeRows(chunk.pointer, rows: rc, columns: i, columnFactors: nil, into: weight.pointer + r0 * i,
                              scales: scale.pointer + r0)
        }
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

    /// A column of an operand whose largest |value| exceeds this many times the median column's
    /// is an outlier: its products run in f32 (LLM.int8's decomposition, Dettmers et al. 2022, with
    /// the threshold relative to the operand instead of bitsandbytes' absolute 6), so that a few
    /// large features (LLMs' hidden states have them) do not set every row's scale.
    public static let outlierRatio: Float = 3
    /// At most this share of the columns are outliers (the largest ones).
    public static let maxOutlierShare = 16

    /// The outlier columns of a [R, C] (values ⊙ factors), ascending.
    static func outlierColumns(_ a: UnsafePointer<Float>, rows: Int, columns c: Int, factors: UnsafePointer<Float>?) -> [Int] {
        var colMax = [Float](repeating: 0, count: c)
        colMax.withUnsafeMutableBufferPointer { cm in
            let out = cm.baseAddress!
            Parallel.forEachRange(c, costPerItem: rows) { range in
                finch_column_absmax(a + range.lowerBound, Int32(rows), Int32(range.count), c, factors.map { $0 + range.lowerBound },
                                    out + range.lowerBound)
            }
        }
        let median = colMax.sorted()[c / 2]
        guard median > 0 else { return [] }
        var picked = (0..<c).filter { colMax[$0] > Self.outlierRatio * median }
        if picked.count > c / Self.maxOutlierShare {
            picked = Array(picked.sorted { colMax[$0] > colMax[$1] }.prefix(c / Self.maxOutlierShare)).sorted()
        }
        return picked
    }

    /// `quantizeRows` of a [R, C] ⊙ factors with its outlier columns left out (factor 0); returns
    /// those columns, whose products the caller runs in f32.
    static func quantizeRowsWithoutOutliers(_ a: UnsafePointer<Float>, rows: Int, columns c: Int, factors: UnsafePointer<Float>?,
                                            into q: UnsafeMutablePointer<Int8>, scales s: UnsafeMutablePointer<Float>) -> [Int] {
        Profile.measure(.int8Convert) {
            let outliers = outlierColumns(a, rows: rows, columns: c, factors: factors)
            guard !outliers.isEmpty else {
                quantizeRows(a, rows: rows, columns: c, columnFactors: factors, into: q, scales: s)
                return []
            }
            var kept = factors.map { Array(UnsafeBufferPointer(start: $0, count: c)) } ?? [Float](repeating: 1, count: c)
            for j in outliers { kept[j] = 0 }
            kept.withUnsafeBufferPointer { quantizeRows(a, rows: rows, columns: c, columnFactors: $0.baseAddress, into: q, scales: s) }
            return outliers
        }
    }

    /// y [M, O] (+)= x [M, I] · Wᵀ: the int8 product of x without its outlier columns, plus theirs in f32
    /// (added as the integer sums are scaled back: one pass over y).
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                        scratch: Scratch) throws(CoreError) {
        let (xq, sx, c) = scratch.int8Operands(input: m * columns, rows: m, output: m * rows)
        let outliers = Self.quantizeRowsWithoutOutliers(x, rows: m, columns: columns, factors: nil, into: xq, scales: sx)
        try GEMM.int8(m: m, n: rows, k: columns, a: xq, lda: columns, b: weight.pointer, ldb: columns, bTransposed: true,
                      c: c, ldc: rows, accumulate: false)
        guard !outliers.isEmpty else {
            Profile.measure(.int8Convert) { scaleBack(c, rows: m, columns: rows, rowScales: sx, columnScales: scale.pointer, into: y, accumulate: accumulate) }
            return
        }
        // y += x[:, J] · W[:, J]ᵀ, W's columns J from its int8 form.
        let k = outliers.count
        let xo = scratch.floats(m * k, slot: Scratch.outlierInputSlot), wo = scratch.floats(k * rows, slot: Scratch.outlierWeightSlot)
        outliers.map(Int32.init).withUnsafeBufferPointer { j in
            finch_gather_columns(x, Int32(m), columns, j.baseAddress!, Int32(k), xo)
            finch_gather_weight_columns(weight.pointer, Int32(rows), Int32(columns), scale.pointer, j.baseAddress!, Int32(k), wo)
        }
        Profile.measure(.int8Convert) {
            scaleBack(c, rows: m, columns: rows, rowScales: sx, columnScales: scale.pointer, into: y, accumulate: accumulate, outliers: (xo, k, wo))
        }
    }

    /// dx [M, I] (+)= dy [M, O] · W: dy ⊙ the weight's scales, without its outlier columns,
    /// quantized per row and multiplied in integers, plus the outlier columns' part in f32.
    public func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                              scratch: Scratch) throws(CoreError) {
        let (gq, sg, c) = scratch.int8Operands(input: m * rows, rows: m, output: m * columns)
        let outliers = Self.quantizeRowsWithoutOutliers(dy, rows: m, columns: rows, factors: scale.pointer, into: gq, scales: sg)
        try GEMM.int8(m: m, n: columns, k: rows, a: gq, lda: rows, b: weight.pointer, ldb: columns, bTransposed: false,
                      c: c, ldc: columns, accumulate: false)
        guard !outliers.isEmpty else {
            Profile.measure(.int8Convert) { scaleBack(c, rows: m, columns: columns, rowScales: sg, columnScales: nil, into: dx, accumulate: accumulate) }
            return
        }
        // dx += dy[:, J] · W[J, :], W's rows J from its int8 form.
        let k = outliers.count
        let go = scratch.floats(m * k, slot: Scratch.outlierInputSlot), wo = scratch.floats(k * columns, slot: Scratch.outlierWeightSlot)
        outliers.map(Int32.init).withUnsafeBufferPointer { o in
            finch_gather_columns(dy, Int32(m), rows, o.baseAddress!, Int32(k), go)
            finch_gather_weight_rows(weight.pointer, Int32(columns), scale.pointer, o.baseAddress!, Int32(k), wo)
        }
        Profile.measure(.int8Convert) {
            scaleBack(c, rows: m, columns: columns, rowScales: sg, columnScales: nil, into: dx, accumulate: accumulate, outliers: (go, k, wo))
        }
    }

    /// out [R, C] (+)= sums [R, C] · rowScales[r] (· columnScales[c]).
    /// With `outliers` (xo [R, K], K, wo [K, C]), plus xo · wo in the same pass.
    private func scaleBack(_ sums: UnsafePointer<Int32>, rows: Int, columns c: Int, rowScales: UnsafePointer<Float>,
                           columnScales: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>, accumulate: Bool,
                           outliers: (UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>)? = nil) {
        if let (xo, k, wo) = outliers {
            Parallel.forEachRange(rows, costPerItem: c * (k + 1)) { r in
                finch_scale_sums_outliers(sums + r.lowerBound * c, Int32(r.count), Int32(c), rowScales + r.lowerBound, columnScales,
                                          xo + r.lowerBound * k, Int32(k), wo, out + r.lowerBound * c, accumulate ? 1 : 0)
            }
            return
        }
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
    static let int8InputSlot = 16, int8ScaleSlot = 17, int8SumSlot = 18, outlierInputSlot = 19, outlierWeightSlot = 20
}

/// Activation rows quantized for the integer block kernels of decoding (`finch_block_gemv_q8`): int8
/// values [M, I] and, per group of 32, a scale d and the sum d·Σq (llama.cpp's Q8 activations).
public struct QuantizedActivations {
    public let values: UnsafePointer<Int8>
    public let scales: UnsafePointer<Float>
    public let sums: UnsafePointer<Float>

    /// Runs `body` on x [M, I] quantized in stack memory; nil when I is not a multiple of 32.
    public static func with<R>(_ x: UnsafePointer<Float>, rows m: Int, columns c: Int,
                               _ body: (QuantizedActivations) -> R) -> R? {
        guard c % 32 == 0 else { return nil }
        let groups = m * c / 32
        return withUnsafeTemporaryAllocation(of: Int8.self, capacity: m * c) { q in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * groups) { f in
                let (qp, fp) = (q.baseAddress!, f.baseAddress!)
                Profile.measure(.int8Convert) { finch_quantize_q8_groups(x, c, Int32(m), Int32(c), qp, fp, fp + groups) }
                return body(QuantizedActivations(values: qp, scales: fp, sums: fp + groups))
            }
        }
    }
}
