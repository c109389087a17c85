// Dimension letters: M rows, I input features, O output features.

/// A trainable f32 linear map `y = x · Wᵀ` (W `[O, I]`, PyTorch layout) with its gradients:
/// the building block of LoRA's factors (A `[r, in]`, B `[out, r]`). Every product is one
/// multithreaded GEMM; callers apply LoRA's `alpha / r` scale to the small `[M, r]` tensors.
public enum Dense {
    /// y [M, O] (+)= x [M, I] · weightᵀ (weight [O, I]).
    public static func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, rows m: Int, outFeatures o: Int,
                               inFeatures i: Int, accumulate: Bool = false) {
        GEMM.f32(m: m, n: o, k: i, a: x, lda: i, b: weight, ldb: i, bTransposed: true,
                 c: y, ldc: o, accumulate: accumulate)
    }

    /// dx [M, I] += dy [M, O] · weight [O, I] (`accumulate: false` overwrites).
    public static func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                     weight: UnsafePointer<Float>, rows m: Int, outFeatures o: Int,
                                     inFeatures i: Int, accumulate: Bool = true) {
        GEMM.f32(m: m, n: i, k: o, a: dy, lda: o, b: weight, ldb: i, bTransposed: false,
                 c: dx, ldc: i, accumulate: accumulate)
    }

    /// dweight [O, I] += dyᵀ [O, M] · x [M, I] (a sum over the rows; `accumulate: false` overwrites).
    public static func backwardWeight(dweight: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                      x: UnsafePointer<Float>, rows m: Int, outFeatures o: Int,
                                      inFeatures i: Int, accumulate: Bool = true) {
        GEMM.f32(m: o, n: i, k: m, a: dy, lda: o, aTransposed: true, b: x, ldb: i, bTransposed: false,
                 c: dweight, ldc: i, accumulate: accumulate)
    }
}
