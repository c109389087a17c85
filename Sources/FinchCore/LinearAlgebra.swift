import COpenBLAS

// Dimension letters: M rows, N columns, K = min(M, N).

/// Matrix factorizations in float64 through LAPACK (OpenBLAS's), on row-major matrices: the
/// decompositions that PEFT's initializations take of a weight (`torch.linalg.qr` / `svd`, which call
/// the same LAPACK routines, geqrf + orgqr and gesdd).
public enum LinearAlgebra {
    /// A LAPACK routine reported `info` ≠ 0.
    public struct Failure: Error, CustomStringConvertible {
        public let routine: String
        public let info: Int32
        public var description: String {
            "LAPACK \(routine) failed (info \(info))" + (info > 0 ? ": it did not converge" : ": an argument was invalid")
        }
    }

    /// The reduced QR decomposition a [M, N] = Q [M, K] · R [K, N] (Householder, LAPACK's signs:
    /// R's diagonal may be negative), both row-major.
    public static func qr(_ a: [Double], rows m: Int, columns n: Int) throws(Failure) -> (q: [Double], r: [Double]) {
        precondition(a.count == m * n && m > 0 && n > 0)
        let k = min(m, n)
        var cm = transpose(a, rows: m, columns: n)   // column-major: column j at j·M
        var tau = [Double](repeating: 0, count: k)
        var mm = Int32(m), nn = Int32(n), kk = Int32(k), lda = Int32(m)
        try withWork(routine: "dgeqrf") { work, lwork in
            var info: Int32 = 0
            dgeqrf_(&mm, &nn, &cm, &lda, &tau, work, lwork, &info)
            return info
        }
        var r = [Double](repeating: 0, count: k * n)
        for i in 0..<k { for j in i..<n { r[i * n + j] = cm[j * m + i] } }
        // Q: the first K columns of the reflectors' product.
        var qc = Array(cm.prefix(m * k))
        try withWork(routine: "dorgqr") { work, lwork in
            var info: Int32 = 0
            dorgqr_(&mm, &kk, &kk, &qc, &lda, &tau, work, lwork, &info)
            return info
        }
        return (transpose(qc, rows: k, columns: m), r)   // from column-major [M, K]
    }

    /// The thin singular value decomposition a [M, N] = U [M, K] · diag(s) [K] · Vᵀ [K, N] (gesdd),
    /// singular values descending; U and Vᵀ row-major.
    public static func svd(_ a: [Double], rows m: Int, columns n: Int) throws(Failure) -> (u: [Double], s: [Double], vt: [Double]) {
        precondition(a.count == m * n && m > 0 && n > 0)
        let k = min(m, n)
        var cm = transpose(a, rows: m, columns: n)   // column-major
        var s = [Double](repeating: 0, count: k), u = [Double](repeating: 0, count: m * k), vt = [Double](repeating: 0, count: k * n)
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var mm = Int32(m), nn = Int32(n), lda = Int32(m), ldu = Int32(m), ldvt = Int32(k)
        var jobz: CChar = 0x53   // "S": the first K columns of U and rows of Vᵀ
        try withWork(routine: "dgesdd") { work, lwork in
            var info: Int32 = 0
            dgesdd_(&jobz, &mm, &nn, &cm, &lda, &s, &u, &ldu, &vt, &ldvt, work, lwork, &iwork, &info, 1)
            return info
        }
        return (transpose(u, rows: k, columns: m), s, transpose(vt, rows: n, columns: k))   // from column-major
    }

    /// A rank-q approximation of a [M, N]'s leading singular triplets by randomized subspace iteration, as
    /// `torch.svd_lowrank(a, q, niter)` computes it (Halko et al., 2009, algorithm 5.1; the random start a
    /// [N, q] (or [M, q] for a wide a) Gaussian from `random`): U [M, q], s [q], V [N, q], row-major.
    public static func svdLowRank(_ a: [Double], rows m: Int, columns n: Int, rank q: Int, iterations: Int,
                                  random: inout SeededRandom) throws(Failure) -> (u: [Double], s: [Double], v: [Double]) {
        precondition(a.count == m * n && q >= 1 && q <= min(m, n))
        // Work on the tall one of a and aᵀ.
        let tall = m >= n
        let (tm, tn) = tall ? (m, n) : (n, m)
        let t = tall ? a : transpose(a, rows: m, columns: n)
        let tt = transpose(t, rows: tm, columns: tn)
        let r = (0..<(tn * q)).map { _ in Double(random.nextGaussian()) }
        var basis = try qr(multiply(t, r, m: tm, k: tn, n: q), rows: tm, columns: q).q
        for _ in 0..<iterations {
            let back = try qr(multiply(tt, basis, m: tn, k: tm, n: q), rows: tn, columns: q).q
            basis = try qr(multiply(t, back, m: tm, k: tn, n: q), rows: tm, columns: q).q
        }
        let b = multiply(transpose(basis, rows: tm, columns: q), t, m: q, k: tm, n: tn)   // [q, tn]
        let (ub, s, vt) = try svd(b, rows: q, columns: tn)
        let u = multiply(basis, ub, m: tm, k: q, n: q)                                   // [tm, q]
        let v = transpose(vt, rows: q, columns: tn)                                      // [tn, q]
        return tall ? (u, s, v) : (v, s, u)
    }

    /// The Cholesky factor of a symmetric positive definite a [N, N]: the lower triangular L with
    /// a = L·Lᵀ (potrf), row-major (zeros above the diagonal); nil when a is not positive definite
    /// (a leading minor is not), as `torch.linalg.cholesky_ex` reports it.
    public static func cholesky(_ a: [Double], size n: Int) throws(Failure) -> [Double]? {
        precondition(a.count == n * n && n > 0)
        // Row-major lower = column-major upper of the same memory: factor "U" and read it back as L.
        var m = a, nn = Int32(n), lda = Int32(n), info: Int32 = 0
        var uplo: CChar = 0x55   // "U"
        dpotrf_(&uplo, &nn, &m, &lda, &info, 1)
        if info > 0 { return nil }
        guard info == 0 else { throw Failure(routine: "dpotrf", info: info) }
        for i in 0..<n { for j in (i + 1)..<n { m[i * n + j] = 0 } }
        return m
    }

    /// c [M, N] = a [M, K] · b [K, N], row-major, in float64.
    static func multiply(_ a: [Double], _ b: [Double], m: Int, k: Int, n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for p in 0..<k {
                let x = a[i * k + p]
                if x == 0 { continue }
                for j in 0..<n { c[i * n + j] += x * b[p * n + j] }
            }
        }
        return c
    }

    /// aᵀ [N, M] of a [M, N], row-major (also the column-major form of a, and back).
    public static func transpose(_ a: [Double], rows m: Int, columns n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { out[j * m + i] = a[i * n + j] } }
        return out
    }

    /// Runs `call` (returning LAPACK's info) once with lwork = −1 (the size query) and again with
    /// the work it asked for.
    private static func withWork(routine: String,
                                 _ call: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Int32>) -> Int32) throws(Failure) {
        var size = 0.0, lwork: Int32 = -1
        var info = call(&size, &lwork)
        guard info == 0 else { throw Failure(routine: routine, info: info) }
        var work = [Double](repeating: 0, count: max(1, Int(size)))
        lwork = Int32(work.count)
        info = work.withUnsafeMutableBufferPointer { call($0.baseAddress!, &lwork) }
        guard info == 0 else { throw Failure(routine: routine, info: info) }
    }
}
