import FinchCore

// Dimension letters: M rows, I in features, O out features, R rank.

/// A frozen linear layer with LoRA adapters, as PEFT's `lora.Linear`:
/// `y = W·x + scaling · B·(A·x)`; with DoRA `y = m/‖W + scaling·B·A‖ ⊙ (W·x + scaling · B·(A·x))`.
/// Several adapters can be loaded; one (or none) is active. Merging folds the active adapter
/// into the base weight (in its storage type; bf16 merges round as PEFT's do).
public final class LoRALinear: LinearLayer, @unchecked Sendable {
    public let base: LinearWeight
    /// Module name, e.g. `model.layers.0.self_attn.q_proj`.
    public let name: String
    public private(set) var adapters: [String: LoRAModule] = [:]
    /// The adapter applied in forward; nil = disabled (the base layer alone).
    public var active: String?
    /// The adapter currently merged into `base`, and the DoRA factors used for it.
    public private(set) var merged: (name: String, doraScale: [Float]?)? = nil
    private var doraCache: [String: [Float]] = [:]

    public init(base: LinearWeight, name: String) {
        self.base = base
        self.name = name
    }

    public var inFeatures: Int { base.inFeatures }
    public var outFeatures: Int { base.outFeatures }

    public func add(_ module: LoRAModule, as adapter: String) {
        precondition(module.inFeatures == inFeatures && module.outFeatures == outFeatures)
        adapters[adapter] = module
        doraCache[adapter] = nil
    }

    public func remove(_ adapter: String) {
        adapters[adapter] = nil
        doraCache[adapter] = nil
        if active == adapter { active = nil }
    }

    public func wantsBF16Input(rows: Int) -> Bool { base.wantsBF16Input(rows: rows) }

    /// The adapter forward must add (nil when disabled or already merged).
    var applied: LoRAModule? {
        guard let a = active, merged?.name != a else { return nil }
        return adapters[a]
    }

    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                        rows m: Int, accumulate: Bool, scratch: Scratch) {
        guard let lora = applied, let name = active else {
            base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch)
            return
        }
        let o = outFeatures, r = lora.rank
        let t = Buffer<Float>(count: m * r)                      // [M, R] = x·Aᵀ
        lora.aLinear.forward(y: t.pointer, x: x, rows: m, scratch: scratch)
        for i in 0..<(m * r) { t[i] *= lora.scaling }
        if lora.magnitude == nil {
            base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch)
            lora.bLinear.forward(y: y, x: t.pointer, rows: m, accumulate: true, scratch: scratch)   // y += t·Bᵀ
            return
        }
        // DoRA: (W·x + scaling·B·A·x) scaled per output column, then stored or added.
        let scale = doraScale(name, lora)
        let tmp = Buffer<Float>(count: m * o)
        base.forward(y: tmp.pointer, x: x, xBF16: xBF16, rows: m, accumulate: false, scratch: scratch)
        lora.bLinear.forward(y: tmp.pointer, x: t.pointer, rows: m, accumulate: true, scratch: scratch)
        for row in 0..<m {
            let src = tmp.pointer + row * o, dst = y + row * o
            for c in 0..<o { dst[c] = accumulate ? dst[c] + scale[c] * src[c] : scale[c] * src[c] }
        }
    }

    func doraScale(_ name: String, _ lora: LoRAModule) -> [Float] {
        if let s = doraCache[name] { return s }
        let s = lora.doraScale(base: base)
        doraCache[name] = s
        return s
    }

    /// Folds the active adapter into the base weight: W ← W + scaling·B·A (DoRA: the rescaled sum).
    public func merge() throws {
        guard let name = active, let lora = adapters[name] else { return }
        if let m = merged {
            if m.name == name { return }
            throw AdapterError.unsupported("\(self.name): adapter '\(m.name)' is merged; unmerge it before merging '\(name)'")
        }
        let scale = lora.magnitude == nil ? nil : doraScale(name, lora)
        updateBase { o, row in
            lora.adaptedRow(o, base: row, into: row)
            if let scale { for c in 0..<inFeatures { row[c] *= scale[o] } }
        }
        merged = (name, scale)
        doraCache.removeAll()   // norms depend on the base weight, which changed
    }

    /// Undoes `merge()`: W ← W / scale − scaling·B·A (exact in f32 up to rounding).
    public func unmerge() {
        guard let m = merged, let lora = adapters[m.name] else { return }
        updateBase { o, row in
            if let s = m.doraScale { for c in 0..<inFeatures { row[c] /= s[o] } }
            for r in 0..<lora.rank {
                let coef = lora.scaling * lora.b[o * lora.rank + r]
                let ar = lora.a.pointer + r * inFeatures
                for c in 0..<inFeatures { row[c] -= coef * ar[c] }
            }
        }
        merged = nil
        doraCache.removeAll()
    }

    /// Rewrites every row of the base weight through `f` (on f32 values; bf16 is widened and rounded back).
    private func updateBase(_ f: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let i = inFeatures
        switch base.storage {
        case .f32(let w):
            Parallel.forEach(outFeatures, costPerItem: i * 8) { o in f(o, w.pointer + o * i) }
        case .bf16(let w):
            Parallel.forEachRange(outFeatures, costPerItem: i * 8) { range in
                let row = UnsafeMutablePointer<Float>.allocate(capacity: i)
                defer { row.deallocate() }
                for o in range {
                    BFloat16.convert(w.pointer + o * i, to: row, count: i)
                    f(o, row)
                    BFloat16.convert(row, to: w.pointer + o * i, count: i)
                }
            }
        }
    }
}
