import FinchCore
import FinchFormats

// Dimension letters: M rows of x, N out features (rows of W), K in features (columns of W),
// J outlier columns.

/// A frozen weight W [N, K] in bitsandbytes' LLM.int8 format (`Linear8bitLt` / `Int8Params`):
/// each row quantized to int8 against its absolute maximum, `CB[n, k] = round(W16[n, k] · 127 /
/// SCB[n])` with W16 the weight rounded to fp16 and `SCB[n] = max_k |W16[n, k]|` (bitsandbytes'
/// `int8_vectorwise_quant`, round half to even).
///
/// Products are LLM.int8's mixed decomposition, as bitsandbytes computes it on the CPU
/// (`MatMul8bitLt`, `int8_mixed_scaled_mm`): x is rounded to fp16; its elements with |x| ≥
/// `threshold` (`llm_int8_threshold`) mark outlier columns; each row of x, outliers zeroed, is
/// quantized to int8 against its own absmax; the int8 product is rescaled by both absmaxes
/// (× 6.200124e-05 ≈ 1/127²), and the outlier columns are added back in f32 from the original x
/// and the dequantized weight columns. With `threshold` 0 there are no outliers. The input
/// gradient multiplies by the dequantized weight `CB · SCB / 127` (as bitsandbytes' backward).
public final class Int8Tensor: QuantizedMatrix, @unchecked Sendable {
    public let rows: Int, columns: Int
    /// CB [N, K].
    public private(set) var data: [Int8]
    /// SCB [N]: each row's absmax (of the fp16-rounded weight).
    public private(set) var scb: [Float]
    /// `llm_int8_threshold`: activations at or above it in magnitude are outliers (0: none).
    public var threshold: Float

    public init(rows: Int, columns: Int, data: [Int8], scb: [Float], threshold: Float) {
        precondition(data.count == rows * columns && scb.count == rows)
        self.rows = rows; self.columns = columns; self.data = data; self.scb = scb; self.threshold = threshold
    }

    public var shape: [Int] { [rows, columns] }
    public var byteCount: Int { data.count + scb.count * 4 }

    /// bitsandbytes' `int8_vectorwise_quant` of one row of `count` values (already fp16-rounded
    /// by the caller when it quantizes a weight): returns the absmax, writes the int8 codes.
    /// A row of zeros has absmax 0 and codes 0 (bitsandbytes' 0 · ∞ = NaN casts to 0 on x86).
    @inline(__always)
    static func quantizeRow(_ v: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
        var m: Float = 0
        for k in 0..<count { m = max(m, abs(v[k])) }
        let s = 127 * (1 / m)   // PyTorch's `127.0 / t` multiplies by the reciprocal
        for k in 0..<count {
            let r = (v[k] * s).rounded(.toNearestOrEven)
            q[k] = r.isFinite ? Int8(max(-128, min(127, r))) : 0
        }
        return m
    }

    /// Quantizes W [rows, columns] as `Int8Params` does (through fp16).
    public static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, columns: Int, threshold: Float) -> Int8Tensor {
        precondition(w.count == rows * columns)
        var data = [Int8](repeating: 0, count: rows * columns)
        var scb = [Float](repeating: 0, count: rows)
        data.withUnsafeMutableBufferPointer { d in
            scb.withUnsafeMutableBufferPointer { s in
                Parallel.forEachRange(rows, costPerItem: columns * 4) { range in
                    var row = [Float](repeating: 0, count: columns)
                    for n in range {
                        for k in 0..<columns { row[k] = Float(Float16(w[n * columns + k])) }
                        s[n] = quantizeRow(row, count: columns, into: d.baseAddress! + n * columns)
                    }
                }
            }
        }
        return Int8Tensor(rows: rows, columns: columns, data: data, scb: scb, threshold: threshold)
    }

    /// W ≈ CB · (SCB · (1/127)) in f32, as bitsandbytes dequantizes for the input gradient.
    public func dequantize(into out: UnsafeMutablePointer<Float>) {
        let k = columns
        data.withUnsafeBufferPointer { d in
            Parallel.forEachRange(rows, costPerItem: k) { range in
                for n in range {
                    let s = scb[n] * Float(1.0 / 127.0)
                    for c in 0..<k { out[n * k + c] = Float(d[n * k + c]) * s }
                }
            }
        }
    }

    public func dequantizeRoundedToBF16(into out: UnsafeMutablePointer<Float>) {
        dequantize(into: out)
        BFloat16.round(out, to: out, count: rows * columns)
    }

    public func requantize(from values: UnsafePointer<Float>) throws -> Float {
        let q = Int8Tensor.quantize(UnsafeBufferPointer(start: values, count: rows * columns), rows: rows, columns: columns,
                                    threshold: threshold)
        data = q.data; scb = q.scb
        return maxError(against: values, count: rows * columns)
    }

    /// y[M, N] (+)= LLM.int8(x[M, K], W) (see the type's description).
    public func multiply(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                         scratch: Scratch) -> Bool {
        let n = rows, k = columns
        // x in fp16, outlier elements (|x16| ≥ threshold) zeroed; their columns noted.
        let x16 = scratch.floats(m * k, slot: 10)
        for i in 0..<(m * k) { x16[i] = Float(Float16(x[i])) }
        var outlier = [Bool](repeating: false, count: k)
        if threshold > 0 {
            for i in 0..<(m * k) where abs(x16[i]) >= threshold {
                outlier[i % k] = true
                x16[i] = 0
            }
        }
        let outlierColumns = (0..<k).filter { outlier[$0] }
        // Rows of x to int8 (as floats), against their absmax; outlier columns zeroed.
        let xa = scratch.floats(m * k, slot: 11)
        var rowStats = [Float](repeating: 0, count: m)
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: k)
        defer { codes.deallocate() }
        for r in 0..<m {
            rowStats[r] = Self.quantizeRow(x16 + r * k, count: k, into: codes)
            for c in 0..<k { xa[r * k + c] = Float(codes[c]) }
            for c in outlierColumns { xa[r * k + c] = 0 }
        }
        // CB as floats; the integer product in f32 (exact below 2^24, as bitsandbytes' CPU kernel computes it).
        let w = scratch.weightF32(n * k)
        data.withUnsafeBufferPointer { d in
            Parallel.forEachRange(n, costPerItem: k) { range in
                for i in range.lowerBound * k..<range.upperBound * k { w.pointer[i] = Float(d[i]) }
            }
        }
        let p = scratch.floats(m * n, slot: 12)
        GEMM.f32(m: m, n: n, k: k, a: xa, lda: k, b: w.pointer, ldb: k, bTransposed: true, c: p, ldc: n, accumulate: false)
        // Rescale: i32 · (rowStat · SCB) · 6.200124e-05, then the outlier columns in f32:
        // x[:, J] · (CB[:, J] · SCB · 7.874015718698502e-3)ᵀ; the sum is added to y after (as
        // bitsandbytes' layer output is added to a residual), not y + int8 part + outliers.
        let unit = Float(6.200124e-05)
        for r in 0..<m {
            for o in 0..<n { p[r * n + o] = p[r * n + o] * (rowStats[r] * scb[o]) * unit }
        }
        if !outlierColumns.isEmpty {
            let j = outlierColumns.count
            let sa = scratch.floats(m * j, slot: 13), sb = scratch.floats(n * j, slot: 14)
            for r in 0..<m { for (t, c) in outlierColumns.enumerated() { sa[r * j + t] = x[r * k + c] } }
            let inv = Float(7.874015718698502e-3)
            for o in 0..<n { for (t, c) in outlierColumns.enumerated() { sb[o * j + t] = Float(data[o * k + c]) * scb[o] * inv } }
            GEMM.f32(m: m, n: n, k: j, a: sa, lda: j, b: sb, ldb: j, bTransposed: true, c: p, ldc: n, accumulate: true)
        }
        if accumulate {
            for i in 0..<(m * n) { y[i] += p[i] }
        } else {
            y.update(from: p, count: m * n)
        }
        return true
    }
}

// MARK: serialization

/// bitsandbytes' serialized int8 layout (`Linear8bitLt._save_to_state_dict`, what transformers
/// writes for a `load_in_8bit` model), for a weight named `W`:
///
/// | tensor | dtype, shape | holds |
/// |---|---|---|
/// | `W` | I8 [N, K] | CB |
/// | `<module>.SCB` | F32 [N] | row absmaxes |
/// | `<module>.weight_format` | U8 [] | 0 (row-major) |
extension Int8Tensor {
    /// `name` without its trailing `.weight`: the module the SCB and weight_format belong to.
    static func module(_ name: String) -> String { name.hasSuffix(".weight") ? String(name.dropLast(7)) : name }

    public func safeTensorsEntries(name: String) -> [SafeTensorsWriter.Entry] {
        let m = Self.module(name)
        return [
            SafeTensorsWriter.Entry(name: name, dtype: .i8, shape: [rows, columns], bytes: data.withUnsafeBytes { [UInt8]($0) }),
            .float32(name: m + ".SCB", shape: [rows], values: scb),
            SafeTensorsWriter.Entry(name: m + ".weight_format", dtype: .u8, shape: [], bytes: [0]),
        ]
    }

    /// Whether `collection` holds `name` in the int8 layout (an I8 weight with its SCB).
    public static func isStored(_ name: String, in collection: SafeTensorsCollection) -> Bool {
        collection.info(name)?.dtype == .i8 && collection.contains(module(name) + ".SCB")
    }

    /// Reads the int8 weight stored as `name`; nil when it is not stored that way.
    /// - Throws: ``QuantError/malformed(tensor:what:)`` naming the file and the part that is wrong.
    public static func load(_ name: String, from collection: SafeTensorsCollection, threshold: Float) throws -> Int8Tensor? {
        guard isStored(name, in: collection), let info = collection.info(name) else { return nil }
        let file = collection.file(containing: name)?.path ?? collection.directory
        func bad(_ what: String) -> QuantError { .malformed(tensor: "\(file): \(name)", what: what) }
        guard info.shape.count == 2 else { throw bad("an int8 weight must be 2-D (found shape \(info.shape))") }
        let (n, k) = (info.shape[0], info.shape[1])
        let m = module(name)
        guard let s = collection.info(m + ".SCB"), s.dtype == .f32, s.shape == [n] else {
            throw bad("'\(m).SCB' must be F32 [\(n)] (found \(collection.info(m + ".SCB").map { "\($0.dtype.rawValue) \($0.shape)" } ?? "nothing"))")
        }
        if let f = collection.info(m + ".weight_format") {
            let bytes = [UInt8](try collection.bytes(m + ".weight_format"))
            guard f.elementCount == 1, bytes.first == 0 else {
                throw bad("'\(m).weight_format' is not 0 (row-major): this checkpoint was saved in an old bitsandbytes layout; re-save it with bitsandbytes ≥ 0.45")
            }
        }
        let raw = [UInt8](try collection.bytes(name))
        guard raw.count == n * k else { throw bad("holds \(raw.count) bytes for shape \(info.shape)") }
        let scb = try collection.floats(m + ".SCB")
        guard scb.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw bad("'\(m).SCB' holds a negative or non-finite scale") }
        return Int8Tensor(rows: n, columns: k, data: raw.map { Int8(bitPattern: $0) }, scb: scb, threshold: threshold)
    }

    /// Names of the other tensors of the layout (taken along with the weight).
    public static func companions(of name: String) -> [String] { [module(name) + ".SCB", module(name) + ".weight_format"] }
}
