import FinchCore
import FinchFormats
import FinchLoRA

// Dimension letters: N packed rows of a micro-batch, C hidden size, V vocabulary, R LoRA rank.

extension DecoderModel {
    /// What a training pass over `rows` packed rows allocates (see `TrainingActivationBytes`): the
    /// workspace from the same size table that allocates it (`DecoderWorkspace.byteCount`), the
    /// LoRA scratch slots and `CrossEntropy`'s chunked loss.
    public func trainingActivationBytes(rows n: Int, checkpointing: Bool, loraRank r: Int) -> TrainingActivationBytes {
        let c = spec.hiddenSize, v = spec.vocabSize
        var saved = DecoderWorkspace.byteCount(rows: n, spec: spec, mode: .training(checkpointing: checkpointing))
        let chunk = min(256, n)
        var transient = (chunk * v + chunk * c) * 4                    // logits [chunk, V] + gathered rows
        var maxIn = 0, maxOut = 0, maxWeight = 0, quantized = false, int8 = false
        for slot in linearSlots {
            let w = baseWeight(slot.get())
            maxIn = max(maxIn, w.inFeatures); maxOut = max(maxOut, w.outFeatures)
            maxWeight = max(maxWeight, w.outFeatures * w.inFeatures)
            if case .quantized = w.storage { quantized = true }
            if w.int8 != nil { int8 = true }
        }
        if int8 {   // Int8Product's operands: int8 activations, int32 sums, row scales, the outlier columns in f32
            let wide = max(maxIn, maxOut), outliers = wide / Int8Product.maxOutlierShare
            transient += n * wide + n * wide * 4 + n * 4 + (n + wide) * outliers * 4
        }
        if lmHead.int8 != nil {   // the head's, a chunk of rows at a time (its input gradient's outliers: up to V/16 columns)
            transient += chunk * v * 5 + chunk * 4 + (chunk + c) * (v / Int8Product.maxOutlierShare) * 4
        }
        if case .quantized = lmHead.storage, lmHead.int8 == nil {       // a head in GGUF blocks: expanded a chunk of rows at a time
            quantized = true
            maxWeight = max(maxWeight, lmHead.chunkedExpansion.map { $0.rowsPerChunk * c } ?? v * c)
        }
        transient += (n * maxIn + n * r + 3 * n * maxOut) * 4         // LoRA scratch: xd, t, z / w / d1
        if quantized { transient += maxWeight * (dtype == .bf16 ? 6 : 4) }   // one layer expanded
        if dtype == .bf16 { transient += n * max(maxIn, maxOut) * 2 }  // bf16 copy of x / dy
        if let m = spec.moe {
            // SparseMoE: each sparse layer's routing kept for backward (p [N, E], the chosen experts and their
            // weights [N, K]; one layer's under checkpointing), and one expert's buffers at a time over at most
            // N rows (gathered x, y, dy, dx [M, C]; gate, up, h, dh, dgate, dup [M, F]) with the router's
            // logits and their gradient [N, E].
            let sparse = (0..<spec.numLayers).filter { spec.moe(layer: $0) != nil }.count
            saved += (checkpointing ? min(1, sparse) : sparse) * n * (m.experts + 2 * m.topK) * 4
            let f = max(m.expertSize, m.sharedExpertSize ?? 0)
            transient += (4 * n * c + 6 * n * f + 2 * n * m.experts + n * m.topK) * 4
        }
        return TrainingActivationBytes(saved: saved, transient: transient)
    }
}

extension DecoderModel {
    /// Loading reads the weights tensor by tensor in this order: the embedding, the LM head when
    /// untied, the blocks, the final norm; each tensor's source pages are released once converted
    /// (`MappedFile.release`). A tensor in flight holds its f32 values together with first its
    /// source bytes, then what it becomes (bf16 values or 4-bit blocks), so the peak is the
    /// largest of: the embedding in flight; the embedding kept and the head in flight; all the
    /// weights kept and one block linear in flight.
    public func loadPeakBytes(sourceBytesPerValue s: Double) -> Int {
        /// A weight's bytes while it loads: its f32 values with its source bytes or what it
        /// becomes; GGUF blocks stay mapped (no f32 copy) unless an int8 form is made from them
        /// (from f32 values, a chunk of rows at a time for an embedding-sized matrix).
        func inFlight(_ w: LinearWeight) -> Int {
            let values = w.outFeatures * w.inFeatures
            guard case .quantized(_ as GGUFBlockMatrix, _) = w.storage else { return 4 * values + max(Int(Double(values) * s), w.byteCount) }
            guard w.int8 != nil else { return w.byteCount }
            return w.byteCount + 4 * (w.chunkedExpansion.map { $0.rowsPerChunk * w.inFeatures } ?? values)
        }
        var peak = inFlight(baseEmbedding)
        if baseHead !== baseEmbedding { peak = max(peak, baseEmbedding.byteCount + inFlight(baseHead)) }
        var extra = 0
        for slot in linearSlots {
            let w = baseWeight(slot.get())
            extra = max(extra, inFlight(w) - w.byteCount)
        }
        return max(peak, weightBytes + extra)
    }
}

extension DecoderModel {
    /// The experts' share of `weightBytes` (every sparse layer's gate, up and down; nil without experts).
    public var expertWeightBytes: ExpertWeightBytes? {
        var all = 0, perToken = 0, mapped = true
        for l in layers {
            guard let moe = l.moe else { continue }
            let layer = moe.experts.reduce(0) { sum, e in
                sum + [e.gate, e.up, e.down].reduce(0) { s, w in
                    let weight = baseWeight(w)
                    if case .quantized(_ as GGUFBlockMatrix, _) = weight.storage {} else { mapped = false }
                    return s + weight.byteCount
                }
            }
            all += layer
            perToken += layer * moe.topK / moe.experts.count
        }
        return all == 0 ? nil : ExpertWeightBytes(all: all, perToken: perToken, mapped: mapped)
    }
}
