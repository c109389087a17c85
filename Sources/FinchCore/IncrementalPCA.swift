import Foundation

// Dimension letters: N rows of a batch, C features, K components kept.

/// Incremental principal component analysis, as scikit-learn's `IncrementalPCA.partial_fit` (and PEFT's port of it,
/// which EVA runs) computes it: the running mean and variance of every feature, and after each batch the SVD of the
/// previous components scaled by their singular values, the batch centered on its own mean, and a row correcting for
/// the moved mean; signs fixed so that each component's largest entry is positive. In float64, with the exact SVD
/// (PEFT's EVA runs a randomized approximation of it).
public struct IncrementalPCA: Sendable {
    public let components: Int
    public let features: Int
    /// Rows seen so far.
    public private(set) var seen = 0
    /// [C] the mean and the (population) variance of the rows seen.
    public private(set) var mean: [Double] = []
    public private(set) var variance: [Double] = []
    /// [K', C] the leading components (K' ≤ K: fewer when the data had fewer rows), row-major.
    public private(set) var basis: [Double] = []
    /// [K'] their singular values and the share of the total variance each explains.
    public private(set) var singularValues: [Double] = []
    public private(set) var explainedVarianceRatio: [Double] = []

    public init(components: Int, features: Int) {
        precondition(components >= 1 && components <= features)
        self.components = components; self.features = features
    }

    /// Whether a batch has been fitted.
    public var isFitted: Bool { seen > 0 }
    /// Components found so far (K').
    public var found: Int { singularValues.count }

    /// Component `k` [C].
    public func component(_ k: Int) -> ArraySlice<Double> { basis[(k * features)..<((k + 1) * features)] }

    /// Fits one more batch x [N, C] (row-major).
    public mutating func partialFit(_ x: [Double], rows n: Int) throws(LinearAlgebra.Failure) {
        let c = features
        precondition(x.count == n * c && n > 0)
        // Running mean and variance (Chan et al.'s update, as scikit-learn's _incremental_mean_and_var).
        var batchSum = [Double](repeating: 0, count: c)
        for r in 0..<n { for j in 0..<c { batchSum[j] += x[r * c + j] } }
        let batchMean = batchSum.map { $0 / Double(n) }
        var unnormalized = [Double](repeating: 0, count: c), correction = [Double](repeating: 0, count: c)
        for r in 0..<n {
            for j in 0..<c {
                let d = x[r * c + j] - batchMean[j]
                correction[j] += d; unnormalized[j] += d * d
            }
        }
        for j in 0..<c { unnormalized[j] -= correction[j] * correction[j] / Double(n) }
        let total = seen + n
        var newMean = [Double](repeating: 0, count: c), newVariance = [Double](repeating: 0, count: c)
        for j in 0..<c {
            let lastSum = seen > 0 ? mean[j] * Double(seen) : 0
            newMean[j] = (lastSum + batchSum[j]) / Double(total)
            if seen == 0 {
                newVariance[j] = unnormalized[j] / Double(total)
            } else {
                let ratio = Double(seen) / Double(n)
                let d = lastSum / ratio - batchSum[j]
                newVariance[j] = (variance[j] * Double(seen) + unnormalized[j] + ratio / Double(total) * d * d) / Double(total)
            }
        }
        // The matrix whose SVD gives the new components.
        var m: [Double], rows: Int
        if seen == 0 {
            m = x
            for r in 0..<n { for j in 0..<c { m[r * c + j] -= newMean[j] } }
            rows = n
        } else {
            let k = found
            rows = k + n + 1
            m = [Double](repeating: 0, count: rows * c)
            for i in 0..<k { for j in 0..<c { m[i * c + j] = singularValues[i] * basis[i * c + j] } }
            for r in 0..<n { for j in 0..<c { m[(k + r) * c + j] = x[r * c + j] - batchMean[j] } }
            let factor = (Double(seen) / Double(total) * Double(n)).squareRoot()
            for j in 0..<c { m[(k + n) * c + j] = factor * (mean[j] - batchMean[j]) }
        }
        let (_, s, vt) = try LinearAlgebra.svd(m, rows: rows, columns: c)
        let kept = min(components, s.count)
        var b = Array(vt.prefix(kept * c))
        for i in 0..<kept {
            // The sign that makes the row's largest-magnitude entry positive (scikit-learn's svd_flip, v-based).
            var best = 0
            for j in 1..<c where abs(b[i * c + j]) > abs(b[i * c + best]) { best = j }
            if b[i * c + best] < 0 { for j in 0..<c { b[i * c + j] = -b[i * c + j] } }
        }
        let totalVariance = newVariance.reduce(0, +) * Double(total)
        seen = total; mean = newMean; variance = newVariance
        basis = b
        singularValues = Array(s.prefix(kept))
        explainedVarianceRatio = singularValues.map { $0 * $0 / totalVariance }
    }
}
