import FinchCore

// Dimension letters: O output features, I input features, R rank, K = min(O, I).

/// PEFT's initializations that move the base weight's leading directions into the adapter
/// (`init_lora_weights` "olora" and "pissa"): A and B from a factorization of W [O, I] (in float64,
/// LAPACK's geqrf / gesdd, as `torch.linalg` calls them), and the residual base W − scaling · B·A
/// that the adapter is trained on top of (so that base + adapter starts as W). Values f32.
public enum DecompositionInit {
    public struct Result: Sendable {
        /// A [R, I], B [O, R], the residual base [O, I].
        public let a: [Float], b: [Float], residual: [Float]
    }

    /// OLoRA (Büyükakyüz, 2024; PEFT's `olora_init`): W = Q·R, A = R[:R] (its first R rows),
    /// B = Q[:, :R] (its first R columns).
    /// - Throws: ``AdapterError/unsupported(_:)`` when W holds a NaN or an infinity or R > min(O, I);
    ///   `LinearAlgebra.Failure` when LAPACK fails.
    public static func olora(weight w: [Float], out o: Int, in i: Int, rank r: Int, scaling: Double) throws -> Result {
        try check(w, out: o, in: i, rank: r, method: "olora")
        let (q, rr) = try LinearAlgebra.qr(w.map(Double.init), rows: o, columns: i)
        let k = min(o, i)
        let a = (0..<(r * i)).map { Float(rr[($0 / i) * i + $0 % i]) }
        let b = (0..<(o * r)).map { Float(q[($0 / r) * k + $0 % r]) }
        return Result(a: a, b: b, residual: residual(w, a: a, b: b, out: o, in: i, rank: r, scaling: scaling))
    }

    /// PiSSA (Meng et al., 2024; PEFT's `pissa_init` with the full SVD): W = V·diag(S)·Uh,
    /// S_R = S[:R] / scaling, A = diag(√S_R)·Uh[:R], B = V[:, :R]·diag(√S_R).
    /// `iterations` (PEFT's `pissa_niter_K`): the leading triplets by `LinearAlgebra.svdLowRank`
    /// (torch's `svd_lowrank` with K subspace iterations, its random start from `random`) instead of the full SVD.
    /// - Throws: as `olora`.
    public static func pissa(weight w: [Float], out o: Int, in i: Int, rank r: Int, scaling: Double,
                             iterations: Int? = nil, random: inout SeededRandom) throws -> Result {
        try check(w, out: o, in: i, rank: r, method: "pissa")
        let v: [Double], s: [Double], uh: [Double], k: Int
        if let iterations {
            let low = try LinearAlgebra.svdLowRank(w.map(Double.init), rows: o, columns: i, rank: r, iterations: iterations, random: &random)
            v = low.u; s = low.s; uh = LinearAlgebra.transpose(low.v, rows: i, columns: r); k = r
        } else {
            (v, s, uh) = try LinearAlgebra.svd(w.map(Double.init), rows: o, columns: i)
            k = min(o, i)
        }
        let root = (0..<r).map { (Double(Float(Double(Float(s[$0])) / scaling))).squareRoot() }   // f32 values, as PEFT's
        let a = (0..<(r * i)).map { e in Float(root[e / i] * Double(Float(uh[(e / i) * i + e % i]))) }
        let b = (0..<(o * r)).map { e in Float(Double(Float(v[(e / r) * k + e % r])) * root[e % r]) }
        return Result(a: a, b: b, residual: residual(w, a: a, b: b, out: o, in: i, rank: r, scaling: scaling))
    }

    /// LoftQ (Li et al., 2023; PEFT's `loftq_init`): the base quantized so that it and the adapter
    /// together approximate W better than the quantization alone. `iterations` (PEFT's `loftq_iter`,
    /// ≥ 1) times: Q = `quantize`(T) (T = W first), then the rank-R truncated SVD of W − deq(Q)
    /// (in float64) gives B = U_R·diag(√S_R), A = diag(√S_R)·Vh_R, and the next T = W − B·A.
    /// Returns A, B and the last Q (the base the adapter is trained on).
    ///
    /// PEFT leaves out the adapter's scaling (huggingface/peft#1982): its base + scaling·B·A
    /// approximates W only when lora_alpha = r (scaling 1). Here S_R is divided by `scaling`, as
    /// PiSSA does, so that Q + scaling·B·A is the LoftQ approximation for every alpha; at scaling
    /// 1 this is PEFT's result.
    /// - Throws: as `olora`; `AdapterError/unsupported(_:)` when `iterations` < 1; what `quantize` throws.
    public static func loftq(weight w: [Float], out o: Int, in i: Int, rank r: Int, scaling: Double, iterations: Int,
                             quantize: ([Float]) throws -> LinearWeight) throws -> (a: [Float], b: [Float], base: LinearWeight) {
        try check(w, out: o, in: i, rank: r, method: "loftq")
        guard iterations >= 1 else { throw AdapterError.unsupported("loftq_iter \(iterations): LoftQ needs at least one iteration") }
        var target = w
        var a: [Float] = [], b: [Float] = [], base: LinearWeight!
        for it in 0..<iterations {
            base = try quantize(target)
            let q = base.floatValues()
            let rest = (0..<(o * i)).map { Double(w[$0] - q[$0]) }   // W − deq(Q) in f32, as torch subtracts
            let (u, s, vh) = try LinearAlgebra.svd(rest, rows: o, columns: i)
            let k = min(o, i)
            let root = (0..<r).map { (Double(Float(Double(Float(s[$0])) / scaling))).squareRoot() }
            a = (0..<(r * i)).map { e in Float(root[e / i] * Double(Float(vh[(e / i) * i + e % i]))) }
            b = (0..<(o * r)).map { e in Float(Double(Float(u[(e / r) * k + e % r])) * root[e % r]) }
            if it + 1 < iterations { target = residual(w, a: a, b: b, out: o, in: i, rank: r, scaling: scaling) }
        }
        return (a, b, base)
    }

    private static func check(_ w: [Float], out o: Int, in i: Int, rank r: Int, method: String) throws {
        precondition(w.count == o * i)
        guard r <= min(o, i) else {
            throw AdapterError.unsupported("init_lora_weights \(method): rank \(r) exceeds the weight's smaller side (\(o) × \(i))")
        }
        guard w.allSatisfy(\.isFinite) else {
            throw AdapterError.unsupported("init_lora_weights \(method): the base weight (\(o) × \(i)) holds a NaN or an infinity")
        }
    }

    /// PiSSA with the full SVD.
    public static func pissa(weight w: [Float], out o: Int, in i: Int, rank r: Int, scaling: Double) throws -> Result {
        var unused = SeededRandom(seed: 0)
        return try pissa(weight: w, out: o, in: i, rank: r, scaling: scaling, random: &unused)
    }

    /// W − scaling · B·A: the adapter's fold (`LoRAModule.adaptedRow`) with sign −1.
    static func residual(_ w: [Float], a: [Float], b: [Float], out o: Int, in i: Int, rank r: Int, scaling: Double) -> [Float] {
        let m = LoRAModule(rank: r, scaling: Float(scaling), a: Buffer(a), b: Buffer(b), magnitude: nil, inFeatures: i, outFeatures: o)
        var out = w
        out.withUnsafeMutableBufferPointer { p in
            for row in 0..<o { m.adaptedRow(row, base: p.baseAddress! + row * i, into: p.baseAddress! + row * i, sign: -1) }
        }
        return out
    }
}
