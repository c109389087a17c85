import CFinchKernels

/// Storage type of frozen weights.
public enum WeightDType: String, Sendable, CaseIterable, Codable {
    case f32, bf16
}

/// A frozen linear weight `W[out, in]` (PyTorch `nn.Linear` layout): `y = x · Wᵀ`.
///
/// Small batches (decoding) run Finch's own memory-bound kernel; larger ones run a
/// oneDNN (or OpenBLAS) GEMM. bf16 weights multiply bf16-rounded activations with
/// f32 accumulation and f32 output, on every path and CPU.
public final class LinearWeight: @unchecked Sendable {
    public enum Storage: Sendable {
        case f32(Buffer<Float>)
        case bf16(Buffer<BF16Bits>)
        /// Compressed (4-bit), multiplied in `compute` precision (f32, or bf16 with f32 accumulation).
        case quantized(any QuantizedMatrix, compute: WeightDType)
    }

    public let outFeatures: Int
    public let inFeatures: Int
    public let storage: Storage
    /// The weight's int8 form, when its products run in integers (`useInt8Products`): then every
    /// forward and input gradient runs in integers (decoding on the GGUF blocks when it has them).
    public private(set) var int8: Int8Product?

    /// Rows at or below this use the decode kernel instead of a GEMM.
    public static let smallBatchRows = 4
    /// A quantized weight of more values than this (an embedding-sized head kept in GGUF blocks)
    /// is expanded for its f32 products, and for its int8 form, this many values at a time
    /// (64 MiB of scratch) instead of whole.
    public static let expansionChunkValues = 1 << 24

    public init(outFeatures: Int, inFeatures: Int, storage: Storage) {
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.storage = storage
    }

    /// Wraps f32 values `[out, in]`, converting to `dtype`.
    public convenience init(outFeatures: Int, inFeatures: Int, values: Buffer<Float>, dtype: WeightDType) {
        precondition(values.count == outFeatures * inFeatures)
        switch dtype {
        case .f32:
            self.init(outFeatures: outFeatures, inFeatures: inFeatures, storage: .f32(values))
        case .bf16:
            let b = Buffer<BF16Bits>(count: values.count)
            BFloat16.convert(values.pointer, to: b.pointer, count: values.count)
            self.init(outFeatures: outFeatures, inFeatures: inFeatures, storage: .bf16(b))
        }
    }

    /// The precision products run in (the storage type, or a quantized weight's compute type).
    public var dtype: WeightDType {
        switch storage { case .f32: .f32; case .bf16: .bf16; case .quantized(_, let c): c }
    }

    /// Bytes held by the weight (its int8 form included).
    public var byteCount: Int {
        let own = switch storage {
        case .f32(let b): b.byteCount
        case .bf16(let b): b.byteCount
        case .quantized(let q, _): q.byteCount
        }
        return own + (int8?.byteCount ?? 0)
    }

    /// Makes the weight's products run in integers (`Int8Product`, built from its values), or in
    /// its own precision again. Decoding (up to `smallBatchRows` rows) multiplies a GGUF weight's
    /// own blocks in integers where the type has a kernel, else the int8 form.
    public func useInt8Products(_ on: Bool = true) {
        guard on else { int8 = nil; return }
        if int8 != nil { return }
        if let (q, rowsPerChunk) = chunkedExpansion {
            int8 = Int8Product(rows: outFeatures, columns: inFeatures, rowsPerChunk: rowsPerChunk) { range, out in
                q.expandRows(range, into: out)
            }
            return
        }
        let values = floatValues()
        int8 = Int8Product(values: values.pointer, rows: outFeatures, columns: inFeatures)
    }

    /// A quantized weight too large to expand whole that can expand a range of its rows, and the
    /// rows of one chunk (see `expansionChunkValues`); nil otherwise.
    public var chunkedExpansion: (matrix: any QuantizedMatrix, rowsPerChunk: Int)? {
        guard case .quantized(let q, _) = storage, outFeatures * inFeatures > Self.expansionChunkValues,
              q.expandsRows else { return nil }
        return (q, max(16, Self.expansionChunkValues / inFeatures))
    }

    /// y[M, out] (+)= x[M, in] · Wᵀ (`transposed`: dx[M, in] (+)= dy[M, out] · W) with W expanded
    /// to f32 a chunk of its rows at a time. Each forward output sums over `in` as the whole
    /// product does; the input gradient sums the chunks' products in turn.
    private func chunkedProduct(_ q: any QuantizedMatrix, rowsPerChunk: Int, a: UnsafePointer<Float>, rows m: Int,
                                transposed: Bool, c: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: Scratch) {
        let w = scratch.weightF32(rowsPerChunk * inFeatures)
        for r0 in stride(from: 0, to: outFeatures, by: rowsPerChunk) {
            let rc = min(rowsPerChunk, outFeatures - r0)
            Profile.measure(.dequantize) { q.expandRows(r0..<(r0 + rc), into: w.pointer) }
            if transposed {
                GEMM.f32(m: m, n: inFeatures, k: rc, a: a + r0, lda: outFeatures, b: w.pointer, ldb: inFeatures, bTransposed: false,
                         c: c, ldc: inFeatures, accumulate: accumulate || r0 > 0)
            } else {
                GEMM.f32(m: m, n: rc, k: inFeatures, a: a, lda: inFeatures, b: w.pointer, ldb: inFeatures, bTransposed: true,
                         c: c + r0, ldc: outFeatures, accumulate: accumulate)
            }
        }
    }

    /// The weight as f32 values `[out, in]` (a copy for bf16 and quantized weights).
    public func floatValues() -> Buffer<Float> {
        switch storage {
        case .f32(let b): return b
        case .bf16(let b):
            let f = Buffer<Float>(count: b.count)
            BFloat16.convert(b.pointer, to: f.pointer, count: b.count)
            return f
        case .quantized(let q, _):
            let f = Buffer<Float>(uninitializedCount: outFeatures * inFeatures)
            q.dequantize(into: f.pointer)
            return f
        }
    }

    /// Whether a product over `rows` rows multiplies a bf16 copy of x (then callers sharing one
    /// input between several weights can convert it once and pass it as `xBF16`).
    public func wantsBF16Input(rows: Int) -> Bool {
        dtype == .bf16 && rows > Self.smallBatchRows
    }

    /// A quantized weight expanded into scratch, f32 or bf16 (the compute type: a bf16 product
    /// rounds the weight to bf16 on every path, as a bf16 weight does).
    private func expanded(_ q: any QuantizedMatrix, bf16: Bool, scratch: Scratch) -> Storage {
        let count = outFeatures * inFeatures
        let f = scratch.weightF32(count)
        Profile.measure(.dequantize) { q.dequantize(into: f.pointer) }
        guard bf16 else { return .f32(f) }
        let b = scratch.weightBF16(count)
        Profile.measure(.bf16Convert) { BFloat16.convert(f.pointer, to: b.pointer, count: count) }
        return .bf16(b)
    }

    /// C[M, N] (+)= A[M, K] · op(W) for a 4-bit weight with bf16 compute on a CPU that multiplies
    /// bf16 as f32: the weight expanded straight to f32 rounded to bf16 precision, A rounded
    /// likewise: the values a bf16 product multiplies, without a bf16 copy of the weight to widen
    /// again. `forward` multiplies by Wᵀ (`weightTransposed`), `backwardInput` by W.
    private func roundedProduct(_ q: any QuantizedMatrix, a: UnsafePointer<Float>, rows m: Int, k: Int, n: Int,
                                weightTransposed: Bool, c: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: Scratch) {
        let w = scratch.weightF32(outFeatures * inFeatures)
        Profile.measure(.dequantize) { q.dequantizeRoundedToBF16(into: w.pointer) }
        let ar = scratch.roundedInput(m * k)
        Profile.measure(.bf16Convert) { BFloat16.round(a, to: ar, count: m * k) }
        GEMM.f32(m: m, n: n, k: k, a: ar, lda: k, b: w.pointer, ldb: weightTransposed ? k : n, bTransposed: weightTransposed,
                 c: c, ldc: n, accumulate: accumulate)
    }

    /// y[M, out] (+)= x[M, in] · Wᵀ. `scratch` holds the bf16 copy of x for bf16 GEMMs;
    /// `xBF16` is that copy when the caller already made it.
    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                        xBF16: UnsafePointer<BF16Bits>? = nil, rows m: Int,
                        accumulate: Bool = false, scratch: Scratch) {
        let n = outFeatures, k = inFeatures
        if let int8 {
            if m <= Self.smallBatchRows {
                // Decoding: integer dots on the weight's own blocks where it has them, else on its int8 form.
                if case .quantized(let q, _) = storage, q.multiplySmallInt8(y: y, x: x, rows: m, accumulate: accumulate) { return }
                if int8.forwardSmall(y: y, x: x, rows: m, accumulate: accumulate) { return }
            } else {
                do { try int8.forward(y: y, x: x, rows: m, accumulate: accumulate, scratch: scratch); return }
                catch { GEMM.recordDNNLFailure(error) }   // then the float product below
            }
        }
        var storage = self.storage
        if case .quantized(let q, let compute) = storage {
            if q.multiply(y: y, x: x, rows: m, accumulate: accumulate, scratch: scratch) { return }
            // Decoding: straight from the compressed form when it has a kernel (f32 products in
            // either compute type; they differ from the expanded product by rounding only).
            if m <= Self.smallBatchRows && q.multiplySmall(y: y, x: x, rows: m, accumulate: accumulate) { return }
            if m > Self.smallBatchRows && compute == .bf16 && GEMM.bf16Compute == .f32 {
                roundedProduct(q, a: x, rows: m, k: k, n: n, weightTransposed: true, c: y, accumulate: accumulate, scratch: scratch)
                return
            }
            if compute == .f32, let (q, rowsPerChunk) = chunkedExpansion {
                chunkedProduct(q, rowsPerChunk: rowsPerChunk, a: x, rows: m, transposed: false, c: y, accumulate: accumulate, scratch: scratch)
                return
            }
            storage = expanded(q, bf16: compute == .bf16, scratch: scratch)
        }
        switch storage {
        case .f32(let w):
            if m <= Self.smallBatchRows {
                finch_linear_small_f32(y, n, x, k, w.pointer, Int32(m), Int32(n), Int32(k), accumulate ? 1 : 0)
            } else {
                GEMM.f32(m: m, n: n, k: k, a: x, lda: k, b: w.pointer, ldb: k, bTransposed: true,
                         c: y, ldc: n, accumulate: accumulate)
            }
        case .bf16(let w):
            if m <= Self.smallBatchRows {
                finch_linear_small_bf16(y, n, x, k, w.pointer, Int32(m), Int32(n), Int32(k), accumulate ? 1 : 0)
            } else {
                var xb = xBF16
                if xb == nil {
                    let tmp = scratch.bf16(m * k)
                    Profile.measure(.bf16Convert) { BFloat16.convert(x, to: tmp, count: m * k) }
                    xb = UnsafePointer(tmp)
                }
                GEMM.bf16(m: m, n: n, k: k, a: xb!, lda: k, b: w.pointer, ldb: k, bTransposed: true,
                          c: y, ldc: n, accumulate: accumulate)
            }
        case .quantized: fatalError("unreachable: expanded above")
        }
    }
}

extension LinearWeight {
    /// Backward of `forward` through the frozen weight: dx[M, in] (+)= dy[M, out] · W[out, in].
    ///
    /// Accumulates into dx (set `accumulate: false` to overwrite). bf16 weights multiply a
    /// bf16-rounded copy of dy (held in `scratch`) with f32 accumulation, like `forward`.
    /// W gets no gradient (it is frozen); trainable weights use `Dense`.
    public func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows m: Int,
                              accumulate: Bool = true, scratch: Scratch) {
        let n = inFeatures, k = outFeatures
        if let int8 {
            do { try int8.backwardInput(dx: dx, dy: dy, rows: m, accumulate: accumulate, scratch: scratch); return }
            catch { GEMM.recordDNNLFailure(error) }
        }
        var storage = self.storage
        if case .quantized(let q, let compute) = storage {
            if compute == .bf16 && GEMM.bf16Compute == .f32 {   // as in `forward`
                roundedProduct(q, a: dy, rows: m, k: k, n: n, weightTransposed: false, c: dx, accumulate: accumulate, scratch: scratch)
                return
            }
            if compute == .f32, let (q, rowsPerChunk) = chunkedExpansion {
                chunkedProduct(q, rowsPerChunk: rowsPerChunk, a: dy, rows: m, transposed: true, c: dx, accumulate: accumulate, scratch: scratch)
                return
            }
            storage = expanded(q, bf16: compute == .bf16, scratch: scratch)
        }
        switch storage {
        case .f32(let w):
            GEMM.f32(m: m, n: n, k: k, a: dy, lda: k, b: w.pointer, ldb: n, bTransposed: false,
                     c: dx, ldc: n, accumulate: accumulate)
        case .bf16(let w):
            let dyb = scratch.bf16(m * k)
            Profile.measure(.bf16Convert) { BFloat16.convert(dy, to: dyb, count: m * k) }
            GEMM.bf16(m: m, n: n, k: k, a: dyb, lda: k, b: w.pointer, ldb: n, bTransposed: false,
                      c: dx, ldc: n, accumulate: accumulate)
        case .quantized: fatalError("unreachable: expanded above")
        }
    }
}

/// Reusable scratch memory for kernels that need a temporary (grows, never shrinks).
/// Numbered float slots let one caller hold several temporaries at once; a slot's contents are
/// undefined on return and valid until the next request of the same slot. Not thread-safe.
public final class Scratch: @unchecked Sendable {
    private var bf16Buffer = Buffer<BF16Bits>(count: 0)
    private var floatBuffers: [Buffer<Float>] = []
    private var weightF32Buffer = Buffer<Float>(count: 0)
    private var weightBF16Buffer = Buffer<BF16Bits>(count: 0)
    /// The input of `sharingInput`, and its int8 form once the first integer product made it.
    var sharedInput: UnsafePointer<Float>?
    var sharedInt8: Int8Operand?

    /// Runs `body`, in which several weights multiply the same input x in turn (a block's normed
    /// hidden states into q, k and v, or gate and up) and x does not change: the first integer
    /// product quantizes x, the others reuse its int8 form (`Int8Product.forward`).
    public func sharingInput<R>(_ x: UnsafePointer<Float>, _ body: () throws -> R) rethrows -> R {
        sharedInput = x; sharedInt8 = nil
        defer { sharedInput = nil; sharedInt8 = nil }
        return try body()
    }

    /// A quantized weight expanded to f32 (one layer's worth; reused by every layer).
    public func weightF32(_ count: Int) -> Buffer<Float> {
        if weightF32Buffer.count < count { weightF32Buffer = Buffer(uninitializedCount: count) }
        return weightF32Buffer
    }

    /// An input rounded to bf16 precision (kept as f32) for a bf16 product computed in f32.
    func roundedInput(_ count: Int) -> UnsafeMutablePointer<Float> {
        if roundedInputBuffer.count < count { roundedInputBuffer = Buffer(uninitializedCount: count) }
        return roundedInputBuffer.pointer
    }
    private var roundedInputBuffer = Buffer<Float>(count: 0)

    /// A quantized weight expanded to bf16.
    func weightBF16(_ count: Int) -> Buffer<BF16Bits> {
        if weightBF16Buffer.count < count { weightBF16Buffer = Buffer(uninitializedCount: count) }
        return weightBF16Buffer
    }

    public init() {}

    /// At least `count` bf16 slots (contents undefined).
    public func bf16(_ count: Int) -> UnsafeMutablePointer<BF16Bits> {
        if bf16Buffer.count < count { bf16Buffer = Buffer(uninitializedCount: count) }
        return bf16Buffer.pointer
    }

    /// At least `count` floats in slot `slot` (contents undefined).
    public func floats(_ count: Int, slot: Int = 0) -> UnsafeMutablePointer<Float> {
        while floatBuffers.count <= slot { floatBuffers.append(Buffer(count: 0)) }
        if floatBuffers[slot].count < count { floatBuffers[slot] = Buffer(uninitializedCount: count) }
        return floatBuffers[slot].pointer
    }
}
