import COpenBLAS
import FinchCore
import Foundation

// Dimension letters: V rows (the vocabulary before growing), K rows added, C columns.

/// The rows a grown embedding or LM head starts with for its new tokens, as transformers'
/// `resize_token_embeddings(mean_resizing=True)` (its default since 4.46) makes them: drawn from the
/// multivariate normal with the old rows' mean μ and covariance 10⁻⁹·Σ (Σ = (W − μ)ᵀ(W − μ) / V,
/// `_init_added_embeddings_weights_with_mean`), or μ itself when 10⁻⁹·Σ is not positive definite.
/// The draw is ours (a seeded Gaussian through the Cholesky factor), not PyTorch's: the rows equal
/// transformers' up to that draw, whose spread is √10⁻⁹ ≈ 3·10⁻⁵ of each column's.
public enum MeanResizing {
    /// The covariance scale transformers draws with.
    public static let epsilon = 1e-9

    /// K new rows [K, C] for the weight `w` [V, C] (as f32; the caller stores them in the weight's
    /// type). `random` nil: the mean alone, no draw (the deterministic placeholder for rows an adapter
    /// brings its own values of).
    public static func rows(for w: LinearWeight, adding k: Int, random: inout SeededRandom?) throws -> Buffer<Float> {
        let v = w.outFeatures, c = w.inFeatures
        precondition(k > 0 && v > 0)
        let values = w.floatValues()
        // μ and Σ in float64, a block of rows at a time (Σ by dsyrk on the centered block).
        var mean = [Double](repeating: 0, count: c)
        for r in 0..<v { for j in 0..<c { mean[j] += Double(values[r * c + j]) } }
        for j in 0..<c { mean[j] /= Double(v) }
        let out = Buffer<Float>(count: k * c)
        guard random != nil else {
            for i in 0..<k { for j in 0..<c { out[i * c + j] = Float(mean[j]) } }
            return out
        }
        var cov = [Double](repeating: 0, count: c * c)
        let block = 4096
        var centered = [Double](repeating: 0, count: min(block, v) * c)
        var start = 0
        while start < v {
            let n = min(block, v - start)
            for r in 0..<n { for j in 0..<c { centered[r * c + j] = Double(values[(start + r) * c + j]) - mean[j] } }
            // cov (upper, row-major) += centeredᵀ · centered
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(c), Int32(n), 1, centered, Int32(c), 1, &cov, Int32(c))
            start += n
        }
        for i in 0..<c {
            for j in i..<c {
                let x = cov[i * c + j] * epsilon / Double(v)
                cov[i * c + j] = x; cov[j * c + i] = x
            }
        }
        guard let l = try LinearAlgebra.cholesky(cov, size: c) else {
            for i in 0..<k { for j in 0..<c { out[i * c + j] = Float(mean[j]) } }
            return out
        }
        var z = [Double](repeating: 0, count: c)
        for i in 0..<k {
            for j in 0..<c { z[j] = Double(random!.nextGaussian()) }
            for j in 0..<c {
                var s = mean[j]
                for p in 0...j { s += l[j * c + p] * z[p] }
                out[i * c + j] = Float(s)
            }
        }
        return out
    }
}

/// A grown embedding or head [V + K, C] in `dtype`: the old rows as they are (a quantized weight's
/// expanded), then `added` [K, C].
func grownWeight(_ w: LinearWeight, added: Buffer<Float>, dtype: WeightDType) -> LinearWeight {
    let v = w.outFeatures, c = w.inFeatures, k = added.count / c
    let all = Buffer<Float>(count: (v + k) * c), old = w.floatValues()
    withExtendedLifetime(old) { all.pointer.update(from: old.pointer, count: v * c) }
    (all.pointer + v * c).update(from: added.pointer, count: k * c)
    return LinearWeight(outFeatures: v + k, inFeatures: c, values: all, dtype: dtype)
}
