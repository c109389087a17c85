/// A frozen weight `W[rows, columns]` held compressed (e.g. bitsandbytes' 4-bit blocks, see
/// FinchQuant). `LinearWeight` multiplies it by expanding the whole matrix — one layer's worth,
/// into reused scratch memory — and running the same GEMM as an uncompressed weight; the model
/// never holds a full-precision copy of more than one layer at a time.
public protocol QuantizedMatrix: AnyObject, Sendable {
    /// Bytes held by the compressed form.
    var byteCount: Int { get }
    /// W [rows, columns] in float32 into `out`.
    func dequantize(into out: UnsafeMutablePointer<Float>)
    /// W [rows, columns] into `out`, each value rounded to bf16 precision (still f32): what a
    /// bf16 compute type multiplies. Implementations round each piece while it is in cache.
    func dequantizeRoundedToBF16(into out: UnsafeMutablePointer<Float>)
    /// Replaces the contents by the quantization of `values` [rows, columns] with the same
    /// settings (merging an adapter into a quantized base); returns max |W_new − values|,
    /// the rounding error of the merge. Throws for a format Finch cannot write.
    func requantize(from values: UnsafePointer<Float>) throws -> Float
    /// y[M, rows] (+)= x[M, columns] · Wᵀ for the few rows of decoding, straight from the
    /// compressed form (no expanded copy); false when this matrix has no such kernel (the caller
    /// then expands it and runs the float kernel).
    func multiplySmall(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool
    /// Whether the format expands a range of its rows (`expandRows`); else only `dequantize` expands it, whole.
    var expandsRows: Bool { get }
    /// Rows `range` of W as f32 into `out` [range.count, columns]; only for a format whose
    /// `expandsRows` is true (callers check it: a GGUF embedding or an embedding-sized head).
    func expandRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>)
    /// y[M, rows] (+)= x[M, columns] · Wᵀ for the few rows of decoding in integers (x quantized in
    /// groups of 32, `QuantizedActivations`), straight from the compressed form; false when the
    /// format has no integer kernel (the caller then runs its other products).
    func multiplySmallInt8(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool
    /// y[M, rows] (+)= x[M, columns] · Wᵀ computed the format's own way (LLM.int8 quantizes x
    /// too), for every M; false for formats whose product is the expanded weight's (the caller
    /// then runs that). The input gradient always multiplies by the expanded weight.
    func multiply(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool, scratch: Scratch) -> Bool
}

extension QuantizedMatrix {
    /// max |W − values| over the `count` values of W [rows, columns], W as it is held now: the
    /// rounding `requantize` reports.
    public func maxError(against values: UnsafePointer<Float>, count: Int) -> Float {
        let back = Buffer<Float>(uninitializedCount: count)
        dequantize(into: back.pointer)
        var err: Float = 0
        for i in 0..<count { err = max(err, abs(back[i] - values[i])) }
        return err
    }

    public func multiplySmall(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        false
    }
    public var expandsRows: Bool { false }
    public func expandRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        preconditionFailure("\(Self.self) does not expand a range of its rows (its expandsRows is false)")
    }
    public func multiplySmallInt8(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) -> Bool {
        false
    }
    public func multiply(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, accumulate: Bool,
                         scratch: Scratch) -> Bool {
        false
    }
}
