import FinchCore

// Dimension letters: M rows, I in features, O out features, R rank.

/// One adapter's factors for one linear layer: ΔW = scaling · B · A, with DoRA's magnitude,
/// and (once training starts) their gradients.
public final class LoRAModule: @unchecked Sendable {
    public let rank: Int
    public let scaling: Float
    /// A [R, I] (PEFT `lora_A.weight`).
    public let a: Buffer<Float>
    /// B [O, R] (PEFT `lora_B.weight`).
    public let b: Buffer<Float>
    /// DoRA magnitude m [O] (PEFT `lora_magnitude_vector`), nil for plain LoRA.
    public let magnitude: Buffer<Float>?
    public let inFeatures: Int, outFeatures: Int
    /// Probability of zeroing an input element on the adapter's path while training (PEFT `lora_dropout`).
    public var dropout: Float = 0
    /// A and B as an OLoRA / PiSSA initialization made them, when it moved part of the base weight into
    /// them (the base then holds the residual): `LoRAAdapter.save` writes the adapter relative to the
    /// original base from these.
    public var initial: (a: [Float], b: [Float])?

    /// Gradients, [R, I], [O, R], [O]; allocated by `enableGradients()`.
    public private(set) var gradA: Buffer<Float>?
    public private(set) var gradB: Buffer<Float>?
    public private(set) var gradMagnitude: Buffer<Float>?

    public init(rank: Int, scaling: Float, a: Buffer<Float>, b: Buffer<Float>, magnitude: Buffer<Float>?,
                inFeatures: Int, outFeatures: Int) {
        precondition(a.count == rank * inFeatures && b.count == outFeatures * rank)
        precondition(magnitude == nil || magnitude!.count == outFeatures)
        self.rank = rank; self.scaling = scaling; self.a = a; self.b = b; self.magnitude = magnitude
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
    }

    /// Allocates (zeroed) gradient buffers if there are none.
    public func enableGradients() {
        if gradA == nil { gradA = Buffer(count: a.count) }
        if gradB == nil { gradB = Buffer(count: b.count) }
        if let m = magnitude, gradMagnitude == nil { gradMagnitude = Buffer(count: m.count) }
    }

    /// Sets the gradients to zero.
    public func zeroGradients() {
        for g in [gradA, gradB, gradMagnitude] { if let g { g.pointer.update(repeating: 0, count: g.count) } }
    }

    /// The trainable tensors with their gradients, named by PEFT's key suffixes
    /// (`lora_A.weight`, `lora_B.weight`, `lora_magnitude_vector`). Call `enableGradients()` first.
    public var parameters: [(suffix: String, value: Buffer<Float>, grad: Buffer<Float>)] {
        var out = [("lora_A.weight", a, gradA!), ("lora_B.weight", b, gradB!)]
        if let m = magnitude { out.append(("lora_magnitude_vector", m, gradMagnitude!)) }
        return out
    }

    /// A and B as linear weights, for the products x·Aᵀ and t·Bᵀ.
    lazy var aLinear = LinearWeight(outFeatures: rank, inFeatures: inFeatures, storage: .f32(a))
    lazy var bLinear = LinearWeight(outFeatures: outFeatures, inFeatures: rank, storage: .f32(b))

    /// Row o of W + sign · scaling · B·A, into `row` [I] (which may be `base`): the one fold of an
    /// adapter into a weight (merge with sign 1, unmerge with −1, export, DoRA's norm).
    func adaptedRow(_ o: Int, base: UnsafePointer<Float>, into row: UnsafeMutablePointer<Float>, sign: Float = 1) {
        let i = inFeatures
        if UnsafePointer(row) != base { row.update(from: base, count: i) }
        for r in 0..<rank {
            let coef = sign * scaling * b[o * rank + r]
            let ar = a.pointer + r * i
            for c in 0..<i { row[c] += coef * ar[c] }
        }
    }

    /// DoRA's weight norm ‖W + scaling·B·A‖ per output row (over the input dimension), [O].
    func doraNorm(base: LinearWeight) -> [Float] {
        let w = base.floatValues()
        var out = [Float](repeating: 1, count: outFeatures)
        out.withUnsafeMutableBufferPointer { out in
            Parallel.forEachRange(outFeatures, costPerItem: inFeatures * (rank + 2)) { range in
                let row = UnsafeMutablePointer<Float>.allocate(capacity: inFeatures)
                defer { row.deallocate() }
                for o in range {
                    adaptedRow(o, base: w.pointer + o * inFeatures, into: row)
                    var ss = 0.0
                    for c in 0..<inFeatures { ss += Double(row[c]) * Double(row[c]) }
                    out[o] = Float(ss.squareRoot())
                }
            }
        }
        return out
    }
}
