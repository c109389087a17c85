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
        var order = colMax
        let median = finch_select_nth(&order, Int32(c), Int32(c / 2))
        guard median > 0 else { return [] }
        var picked = (0..<c).filter { colMax[$0] > Self.outlierRatio * median }
        if picked.count > c / Self.maxOutlierShare {
            picked = Array(picked.sorted { colMax[$0] > colMax[$1] }.prefix(c / Self.maxOutlierShare)).sorted()
        }
        return picked
    }

    /// An operand a [R, C] ⊙ factors for an integer product: its int8 rows without the outlier
    /// columns (`quantizeRows` with those columns' factors 0), and a's values at those columns [R, K],
    /// gathered as each row is quantized (`finch_quantize_rows_s8_split`), in the scratch slots `slots`.
    static func quantizeSplit(_ a: UnsafePointer<Float>, rows: Int, columns c: Int, factors: UnsafePointer<Float>?,
                              scratch: Scratch, slots: Scratch.Int8Slots) -> Int8Operand {
        Profile.measure(.int8Convert) {
            let q = scratch.bytes(rows * c, slot: slots.values), s = scratch.floats(rows, slot: slots.scales)
            let outliers = outlierColumns(a, rows: rows, columns: c, factors: factors).map(Int32.init)
            guard !outliers.isEmpty else {
                quantizeRows(a, rows: rows, columns: c, columnFactors: factors, into: q, scales: s)
                return Int8Operand(values: q, scales: s, outliers: [], outlierValues: nil, rows: rows, columns: c)
            }
            var kept = factors.map { Array(UnsafeBufferPointer(start: $0, count: c)) } ?? [Float](repeating: 1, count: c)
            for j in outliers { kept[Int(j)] = 0 }
            let k = outliers.count
            let xo = scratch.floats(rows * k, slot: slots.outlierValues)
            kept.withUnsafeBufferPointer { kp in
                outliers.withUnsafeBufferPointer { j in
                    Parallel.forEachRange(rows, costPerItem: c * 2) { r in
                        let lo = r.lowerBound
                        finch_quantize_rows_s8_split(a + lo * c, Int32(r.count), Int32(c), kp.baseAddress!, j.baseAddress!,
                                                     Int32(k), q + lo * c, s + lo, xo + lo * k)
                    }
                }
            }
            return Int8Operand(values: q, scales: s, outliers: outliers, outlierValues: xo, rows: rows, columns: c)
        }
    }

    /// y [M, O] (+)= x [M, I] · Wᵀ: the int8 product of x without its outlier columns, plus theirs in f32
    /// (added as the integer sums are scaled back: one pass over y). Inside `Scratch.sharingInput(x)`
    /// the int8 form of x the first product made is reused.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                        scratch: Scratch) throws(CoreError) {
        let operand: Int8Operand
        if scratch.sharedInput == x, let shared = scratch.sharedInt8, shared.rows == m, shared.columns == columns {
            operand = shared
        } else {
            let slots = scratch.sharedInput == x ? Scratch.Int8Slots.shared : .product
            operand = Self.quantizeSplit(x, rows: m, columns: columns, factors: nil, scratch: scratch, slots: slots)
            if slots == .shared { scratch.sharedInt8 = operand }
        }
        let c = scratch.sums(m * rows)
        try GEMM.int8(m: m, n: rows, k: columns, a: operand.values, lda: columns, b: weight.pointer, ldb: columns, bTransposed: true,
                      c: c, ldc: rows, accumulate: false)
        Profile.measure(.int8Convert) {
            // y += x[:, J] · W[:, J]ᵀ, W's columns J [K, O] from its int8 form.
            let k = operand.outliers.count
            let wo = scratch.floats(k * rows, slot: Scratch.outlierWeightSlot)
            if k > 0 {
                operand.outliers.withUnsafeBufferPointer { j in
                    Parallel.forEachRange(rows, costPerItem: k * 8) { r in
                        finch_gather_weight_columns(weight.pointer + r.lowerBound * columns, Int32(r.count), Int32(columns),
                                                    scale.pointer + r.lowerBound, j.baseAddress!, Int32(k), wo + r.lowerBound, rows)
                    }
                }
            }
            scaleBack(c, rows: m, columns: rows, rowScales: operand.scales, columnScales: scale.pointer, into: y,
                      accumulate: accumulate, outliers: (operand.outlierValues, k, wo))
        }
    }

    /// dx [M, I] (+)= dy [M, O] · W: dy ⊙ the weight's scales, without its outlier columns, quantized
    /// per row and multiplied in integers, plus the outlier columns' part in f32.
    public func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                              scratch: Scratch) throws(CoreError) {
        let operand = Self.quantizeSplit(dy, rows: m, columns: rows, factors: scale.pointer, scratch: scratch, slots: .product)
        let c = scratch.sums(m * columns)
        try GEMM.int8(m: m, n: columns, k: rows, a: operand.values, lda: rows, b: weight.pointer, ldb: columns, bTransposed: false,
                      c: c, ldc: columns, accumulate: false)
        Profile.measure(.int8Convert) {
            // dx += dy[:, J] · W[J, :], W's rows J [K, I] from its int8 form.
            let k = operand.outliers.count
            let wo = scratch.floats(k * columns, slot: Scratch.outlierWeightSlot)
            if k > 0 {
                operand.outliers.withUnsafeBufferPointer { j in
                    Parallel.forEachRange(columns, costPerItem: k) { r in
                        finch_gather_weight_rows(weight.pointer, Int32(columns), scale.pointer, j.baseAddress!, Int32(k),
                                                 Int32(r.lowerBound), Int32(r.upperBound), wo)
                    }
                }
            }
            scaleBack(c, rows: m, columns: columns, rowScales: operand.scales, columnScales: nil, into: dx, accumulate: accumulate,
                      outliers: (operand.outlierValues, k, wo))
        }
    }

    /// out [R, C] (+)= sums [R, C] · rowScales[r] (· columnScales[c]) + xo [R, K] · wo [K, C] (K may be 0).
    private func scaleBack(_ sums: UnsafePointer<Int32>, rows: Int, columns c: Int, rowScales: UnsafePointer<Float>,
                           columnScales: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>, accumulate: Bool,
                           outliers: (xo: UnsafeMutablePointer<Float>?, k: Int, wo: UnsafeMutablePointer<Float>)) {
        let k = outliers.k
        Parallel.forEachRange(rows, costPerItem: c * (k + 1)) { r in
            let lo = r.lowerBound
            finch_scale_sums_outliers(sums + lo * c, Int32(r.count), Int32(c), rowScales + lo, columnScales,
                                      outliers.xo.map { $0 + lo * k }, Int32(k), outliers.wo, out + lo * c, accumulate ? 1 : 0)
        }
    }
}

/// An activation operand of an integer product: int8 rows [R, C] with their scales [R], its outlier
/// columns (ascending) and its values there [R, K] (nil without outliers).
struct Int8Operand {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let outliers: [Int32]
    let outlierValues: UnsafeMutablePointer<Float>?
    let rows: Int, columns: Int
}

extension Scratch {
    /// Where an operand's int8 form lives: the product's own slots, or those kept while `sharingInput` runs.
    struct Int8Slots: Equatable {
        let values: Int, scales: Int, outlierValues: Int
        static let product = Int8Slots(values: 16, scales: 17, outlierValues: 19)
        static let shared = Int8Slots(values: 21, scales: 22, outlierValues: 23)
    }

    /// At least `count` bytes in a float slot.
    func bytes(_ count: Int, slot: Int) -> UnsafeMutablePointer<Int8> {
        UnsafeMutableRawPointer(floats((count + 3) / 4, slot: slot)).bindMemory(to: Int8.self, capacity: count)
    }

    /// The int32 sums [count] of one integer product.
    func sums(_ count: Int) -> UnsafeMutablePointer<Int32> {
        UnsafeMutableRawPointer(floats(count, slot: Self.int8SumSlot)).bindMemory(to: Int32.self, capacity: count)
    }

    /// Float slots the integer products use (above those the LoRA layers use): see also `Int8Slots`.
    static let int8SumSlot = 18, outlierWeightSlot = 20
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
