import FinchCore

// Dimension letters: M rows, I in features, O out features, R rank.

/// A frozen linear layer with LoRA adapters, as PEFT's `lora.Linear`:
/// `y = W·x + scaling · B·(A·dropout(x))`; with DoRA (s = m/‖W + scaling·B·A‖, the norm detached)
/// `y = W·x + (s − 1) ⊙ W·dropout(x) + s ⊙ scaling · B·A·dropout(x)`, which is
/// `s ⊙ (W·x + scaling·B·A·x)` without dropout.
/// Several adapters can be loaded; one (or none) is active. Merging folds the active adapter
/// into the base weight (in its storage type; bf16 merges round as PEFT's do).
/// Dropout (training) and per-row adapters (batched serving) come with each call's `PassContext`:
/// the dropout mask of a call is a function of the context's key and the layer's name, so
/// backward and a recomputed forward see the same mask; with `rowAdapters` each row's output is
/// computed as a call with that row's adapter active would compute it (the same products in the
/// same order), and backward refuses such a context.
public final class LoRALinear: LinearLayer, @unchecked Sendable {
    public let base: LinearWeight
    /// Module name, e.g. `model.layers.0.self_attn.q_proj`.
    public let name: String
    public private(set) var adapters: [String: LoRAModule] = [:]
    /// The adapter applied in forward; nil = disabled (the base layer alone).
    public var active: String?
    /// The adapter currently merged into `base`, and the DoRA factors used for it.
    public private(set) var merged: (name: String, doraScale: [Float]?)? = nil
    private var doraCache: [String: (norm: [Float], scale: [Float])] = [:]
    private let nameHash: UInt64

    public init(base: LinearWeight, name: String) {
        self.base = base
        self.name = name
        self.nameHash = FNV1a.hash(name)
    }

    public var inFeatures: Int { base.inFeatures }
    public var outFeatures: Int { base.outFeatures }
    public var frozenWeight: LinearWeight { base }

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

    /// Call after an adapter's factors change (an optimizer step): DoRA's norms are recomputed.
    public func parametersChanged() { doraCache.removeAll() }

    public func wantsBF16Input(rows: Int) -> Bool { base.wantsBF16Input(rows: rows) }

    /// The adapter forward must add (nil when disabled or already merged).
    var applied: (name: String, module: LoRAModule)? {
        guard let a = active, merged?.name != a, let m = adapters[a] else { return nil }
        return (a, m)
    }

    /// The dropout key of this layer's call, when dropout applies.
    private func dropKey(_ lora: LoRAModule, _ context: PassContext) -> UInt64? {
        guard let key = context.dropoutKey, lora.dropout > 0 else { return nil }
        return key ^ nameHash
    }

    // Scratch slots of this layer's temporaries (see `Scratch`); base layers use only bf16 scratch.
    private enum Slot { static let xd = 1, t = 2, z = 3, w = 4, d1 = 5, dxd = 6, du = 7 }

    /// x with the adapter's dropout applied [M, I] (in scratch), or x itself when no dropout applies.
    private func droppedInput(_ x: UnsafePointer<Float>, rows m: Int, _ lora: LoRAModule,
                              _ scratch: Scratch, _ context: PassContext) -> UnsafePointer<Float> {
        guard let key = dropKey(lora, context) else { return x }
        let xd = scratch.floats(m * inFeatures, slot: Slot.xd)
        context.backend.dropout(out: xd, x: x, count: m * inFeatures, p: lora.dropout, key: key, accumulate: false)
        return UnsafePointer(xd)
    }

    /// t [M, R] = scaling · xd·Aᵀ, in scratch.
    private func down(_ xd: UnsafePointer<Float>, rows m: Int, _ lora: LoRAModule, _ scratch: Scratch,
                      _ context: PassContext) -> UnsafeMutablePointer<Float> {
        let r = lora.rank
        let t = scratch.floats(m * r, slot: Slot.t)
        context.backend.linearForward(lora.aLinear, y: t, x: xd, xBF16: nil, rows: m, accumulate: false, scratch: scratch)
        context.backend.scale(t, count: m * r, by: lora.scaling)
        return t
    }

    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                        rows m: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        if let spans = context.rowAdapters {
            routedForward(spans, y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
            return
        }
        guard let (name, lora) = applied else {
            base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
            return
        }
        let o = outFeatures
        let xd = droppedInput(x, rows: m, lora, scratch, context)
        let dropped = xd != x
        let t = down(xd, rows: m, lora, scratch, context)                  // [M, R]
        if lora.magnitude == nil {
            base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
            lora.bLinear.forward(y: y, x: t, xBF16: nil, rows: m, accumulate: true, scratch: scratch, context: context)   // y += t·Bᵀ
            return
        }
        let scale = dora(name, lora).scale
        let z = scratch.floats(m * o, slot: Slot.z)              // [M, O]
        if !dropped {
            // s ⊙ (W·x + t·Bᵀ), stored or added.
            base.forward(y: z, x: x, xBF16: xBF16, rows: m, accumulate: false, scratch: scratch, context: context)
            lora.bLinear.forward(y: z, x: t, xBF16: nil, rows: m, accumulate: true, scratch: scratch, context: context)
            scale.withUnsafeBufferPointer {
                context.backend.scaleColumns(out: y, x: z, scale: $0.baseAddress!, rows: m, columns: o, accumulate: accumulate)
            }
            return
        }
        // W·x + (s − 1) ⊙ W·xd + s ⊙ t·Bᵀ
        base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
        let lb = scratch.floats(m * o, slot: Slot.w)
        base.forward(y: z, x: xd, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
        lora.bLinear.forward(y: lb, x: t, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
        let scaleMinusOne = scale.map { $0 - 1 }
        scaleMinusOne.withUnsafeBufferPointer {
            context.backend.scaleColumns(out: y, x: z, scale: $0.baseAddress!, rows: m, columns: o, accumulate: true)
        }
        scale.withUnsafeBufferPointer {
            context.backend.scaleColumns(out: y, x: lb, scale: $0.baseAddress!, rows: m, columns: o, accumulate: true)
        }
    }

    /// `forward` with per-row adapters (`PassContext.rowAdapters`): one base product over every
    /// row, then each span's adapter on its rows. Row for row the same operations as `forward` with that span's adapter active
    /// (no dropout: routing is for inference), except that an accumulating call mixing DoRA and
    /// other rows adds the other rows' base product to y after it is computed.
    private func routedForward(_ spans: [AdapterSpan], y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                               xBF16: UnsafePointer<BF16Bits>?, rows m: Int, accumulate: Bool, scratch: Scratch,
                               context: PassContext) {
        precondition(merged == nil, "\(name): per-row adapters need an unmerged base")
        let i = inFeatures, o = outFeatures
        let routed = spans.compactMap { span -> (rows: Range<Int>, name: String, lora: LoRAModule)? in
            guard let a = span.adapter, let lora = adapters[a], !span.rows.isEmpty else { return nil }
            precondition(span.rows.lowerBound >= 0 && span.rows.upperBound <= m, "\(name): adapter span outside the rows")
            return (span.rows, a, lora)
        }
        let hasDoRA = routed.contains { $0.lora.magnitude != nil }
        // z: W·x alone where a DoRA span must rescale it before adding (forward's `z`), else y itself.
        let z = hasDoRA && accumulate ? scratch.floats(m * o, slot: Slot.w) : y
        if z != y {
            base.forward(y: z, x: x, xBF16: xBF16, rows: m, accumulate: false, scratch: scratch, context: context)
            var doraRows = [Bool](repeating: false, count: m)
            for r in routed where r.lora.magnitude != nil { for row in r.rows { doraRows[row] = true } }
            for row in 0..<m where !doraRows[row] {           // y += W·x, as forward's accumulating product
                context.backend.add(y + row * o, z + row * o, count: o)
            }
        } else {
            base.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
        }
        for r in routed {
            let n = r.rows.count, first = r.rows.lowerBound
            let t = down(x + first * i, rows: n, r.lora, scratch, context)
            if r.lora.magnitude == nil {
                r.lora.bLinear.forward(y: y + first * o, x: t, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
                continue
            }
            let scale = dora(r.name, r.lora).scale
            let zs = z + first * o
            r.lora.bLinear.forward(y: zs, x: t, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
            scale.withUnsafeBufferPointer {
                context.backend.scaleColumns(out: y + first * o, x: zs, scale: $0.baseAddress!, rows: n, columns: o, accumulate: z != y)
            }
        }
    }

    public func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         rows m: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        precondition(context.rowAdapters == nil, "\(name): per-row adapters are for inference, not backward")
        guard let (name, lora) = applied else {
            base.backward(dx: dx, dy: dy, x: x, rows: m, accumulate: accumulate, scratch: scratch, context: context)
            return
        }
        lora.enableGradients()
        let i = inFeatures, o = outFeatures
        let xd = droppedInput(x, rows: m, lora, scratch, context)   // recomputed, same mask
        let dropped = xd != x
        let t = down(xd, rows: m, lora, scratch, context)                 // [M, R] recomputed

        // dyBase: the gradient through W·x; dyLoRA: the gradient of the adapter's output t·Bᵀ.
        var dyBase = dy, dyLoRA = dy
        if lora.magnitude != nil, let gm = lora.gradMagnitude {
            let (norm, scale) = dora(name, lora)
            // z = W·xd + t·Bᵀ (recomputed); dm += Σ_rows dy ⊙ z / ‖·‖
            let z = scratch.floats(m * o, slot: Slot.z)
            base.forward(y: z, x: xd, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
            lora.bLinear.forward(y: z, x: t, xBF16: nil, rows: m, accumulate: true, scratch: scratch, context: context)
            let dots = [Float](unsafeUninitializedCapacity: o) { buf, count in
                buf.initialize(repeating: 0); count = o
                context.backend.columnDots(out: buf.baseAddress!, dy, z, rows: m, columns: o)
            }
            for c in 0..<o { gm[c] += dots[c] / norm[c] }
            let ds = scratch.floats(m * o, slot: Slot.w)          // dy ⊙ s
            scale.withUnsafeBufferPointer {
                context.backend.scaleColumns(out: ds, x: dy, scale: $0.baseAddress!, rows: m, columns: o, accumulate: false)
            }
            dyLoRA = UnsafePointer(ds)
            if !dropped {
                dyBase = UnsafePointer(ds)                        // y = s ⊙ (W·x + t·Bᵀ)
            } else {
                // y = W·x + (s − 1) ⊙ W·xd + …: the W·xd path's gradient goes to xd.
                let d1 = scratch.floats(m * o, slot: Slot.d1)
                scale.map { $0 - 1 }.withUnsafeBufferPointer {
                    context.backend.scaleColumns(out: d1, x: dy, scale: $0.baseAddress!, rows: m, columns: o, accumulate: false)
                }
                base.backward(dx: dx, dy: dy, x: x, rows: m, accumulate: accumulate, scratch: scratch, context: context)
                let dxd = scratch.floats(m * i, slot: Slot.dxd)
                base.backward(dx: dxd, dy: d1, x: xd, rows: m, accumulate: false, scratch: scratch, context: context)
                loraBackward(dxd: dxd, accumulate: true, dy: dyLoRA, t: t, xd: xd, rows: m, lora, scratch, context)
                context.backend.dropout(out: dx, x: dxd, count: m * i, p: lora.dropout, key: dropKey(lora, context)!, accumulate: true)
                return
            }
        }
        base.backward(dx: dx, dy: dyBase, x: x, rows: m, accumulate: accumulate, scratch: scratch, context: context)
        if !dropped {
            loraBackward(dxd: dx, accumulate: true, dy: dyLoRA, t: t, xd: xd, rows: m, lora, scratch, context)
        } else {
            let dxd = scratch.floats(m * i, slot: Slot.dxd)
            loraBackward(dxd: dxd, accumulate: false, dy: dyLoRA, t: t, xd: xd, rows: m, lora, scratch, context)
            context.backend.dropout(out: dx, x: dxd, count: m * i, p: lora.dropout, key: dropKey(lora, context)!, accumulate: true)
        }
    }

    /// The adapter path's backward, for out = t·Bᵀ with t = scaling · xd·Aᵀ:
    /// dB += dyᵀ·t, du = scaling · dy·B, dA += duᵀ·xd, dxd (+)= du·A.
    private func loraBackward(dxd: UnsafeMutablePointer<Float>, accumulate: Bool, dy: UnsafePointer<Float>,
                              t: UnsafePointer<Float>, xd: UnsafePointer<Float>, rows m: Int, _ lora: LoRAModule,
                              _ scratch: Scratch, _ context: PassContext) {
        let i = inFeatures, o = outFeatures, r = lora.rank, be = context.backend
        be.denseBackwardWeight(dweight: lora.gradB!.pointer, dy: dy, x: t, rows: m, outFeatures: o, inFeatures: r,
                               accumulate: true)
        let du = scratch.floats(m * r, slot: Slot.du)            // [M, R]
        be.denseBackwardInput(dx: du, dy: dy, weight: lora.b.pointer, rows: m, outFeatures: o, inFeatures: r,
                              accumulate: false)
        be.scale(du, count: m * r, by: lora.scaling)
        be.denseBackwardWeight(dweight: lora.gradA!.pointer, dy: du, x: xd, rows: m, outFeatures: r, inFeatures: i,
                               accumulate: true)
        be.denseBackwardInput(dx: dxd, dy: du, weight: lora.a.pointer, rows: m, outFeatures: r, inFeatures: i,
                              accumulate: accumulate)
    }

    /// DoRA's detached weight norm and factor m / norm for an adapter (cached until the weights change).
    func dora(_ name: String, _ lora: LoRAModule) -> (norm: [Float], scale: [Float]) {
        if let s = doraCache[name] { return s }
        let norm = lora.doraNorm(base: base)
        let scale = lora.magnitude.map { m in (0..<outFeatures).map { m[$0] / norm[$0] } } ?? norm.map { _ in 1 }
        doraCache[name] = (norm, scale)
        return (norm, scale)
    }

    /// Folds the active adapter into the base weight: W ← W + scaling·B·A (DoRA: the rescaled sum).
    public func merge() throws {
        guard let name = active, let lora = adapters[name] else { return }
        if let m = merged {
            if m.name == name { return }
            throw AdapterError.unsupported("\(self.name): adapter '\(m.name)' is merged; unmerge it before merging '\(name)'")
        }
        let scale = lora.magnitude == nil ? nil : dora(name, lora).scale
        try updateBase { o, row in fold(lora, scale: scale, row: o, row) }
        merged = (name, scale)
        doraCache.removeAll()   // norms depend on the base weight, which changed
    }

    /// Row o of the weight as `forward` applies `lora`: W + scaling·B·A, times DoRA's `scale`.
    private func fold(_ lora: LoRAModule, scale: [Float]?, row o: Int, _ row: UnsafeMutablePointer<Float>) {
        lora.adaptedRow(o, base: row, into: row)
        if let scale { for c in 0..<inFeatures { row[c] *= scale[o] } }
    }

    /// W [O, I] as `forward` applies it: the base weight with the active adapter folded in when it
    /// is not merged (a copy; the layer is not changed).
    public func effectiveWeight() -> Buffer<Float> {
        let w = base.floatValues()
        guard let name = active, merged?.name != name, let lora = adapters[name] else { return w }
        let out = Buffer<Float>(copying: w.pointer, count: w.count)
        let scale = lora.magnitude == nil ? nil : dora(name, lora).scale
        Parallel.forEach(outFeatures, costPerItem: inFeatures * (lora.rank + 2)) { o in
            fold(lora, scale: scale, row: o, out.pointer + o * inFeatures)
        }
        return out
    }

    /// Undoes `merge()`: W ← W / scale − scaling·B·A (exact in f32 up to rounding).
    public func unmerge() throws {
        guard let m = merged, let lora = adapters[m.name] else { return }
        try updateBase { o, row in
            if let s = m.doraScale { for c in 0..<inFeatures { row[c] /= s[o] } }
            lora.adaptedRow(o, base: row, into: row, sign: -1)
        }
        merged = nil
        doraCache.removeAll()
    }

    /// For a quantized base: max |W − (W + ΔW)| after requantizing, of the last merge or unmerge
    /// (the rounding a 4-bit merge costs; 0 for f32 and bf16 rounding is not tracked).
    public private(set) var lastMergeRoundingError: Float = 0

    /// Replaces the base weight's values by `values` [O, I] (an OLoRA / PiSSA residual), in the base's
    /// own storage (rounded to bf16, or requantized); its int8 form follows.
    public func replaceBase(with values: [Float]) throws {
        precondition(values.count == outFeatures * inFeatures && merged == nil)
        try values.withUnsafeBufferPointer { v in
            try updateBase { o, row in row.update(from: v.baseAddress! + o * inFeatures, count: inFeatures) }
        }
        doraCache.removeAll()
    }

    /// Rewrites every row of the base weight through `f` (on f32 values; bf16 is widened and
    /// rounded back; a quantized weight is dequantized, updated and quantized again; an int8 form
    /// for integer products is made again from the result).
    private func updateBase(_ f: (Int, UnsafeMutablePointer<Float>) -> Void) throws {
        let i = inFeatures
        switch base.storage {
        case .quantized(let q, _):
            let w = base.floatValues()
            Parallel.forEach(outFeatures, costPerItem: i * 8) { o in f(o, w.pointer + o * i) }
            lastMergeRoundingError = try q.requantize(from: w.pointer)
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
        if base.int8 != nil { base.useInt8Products(false); base.useInt8Products() }   // its int8 form follows the new weights
    }
}
