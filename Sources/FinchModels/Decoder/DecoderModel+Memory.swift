import FinchCore
import FinchLoRA

// Dimension letters: N packed rows of a micro-batch, C hidden size, V vocabulary, R LoRA rank.

extension DecoderModel {
    /// What a training pass over `rows` packed rows allocates (see `TrainingActivationBytes`): the
    /// workspace from the same size table that allocates it (`DecoderWorkspace.byteCount`), the
    /// LoRA scratch slots and `CrossEntropy`'s chunked loss.
    public func trainingActivationBytes(rows n: Int, checkpointing: Bool, loraRank r: Int) -> TrainingActivationBytes {
        let c = spec.hiddenSize, v = spec.vocabSize
        let saved = DecoderWorkspace.byteCount(rows: n, spec: spec, mode: .training(checkpointing: checkpointing))
        let chunk = min(256, n)
        var transient = (chunk * v + chunk * c) * 4                    // logits [chunk, V] + gathered rows
        var maxIn = 0, maxOut = 0, maxWeight = 0, quantized = false
        for slot in linearSlots {
            let w = baseWeight(slot.get())
            maxIn = max(maxIn, w.inFeatures); maxOut = max(maxOut, w.outFeatures)
            maxWeight = max(maxWeight, w.outFeatures * w.inFeatures)
            if case .quantized = w.storage { quantized = true }
        }
        transient += (n * maxIn + n * r + 3 * n * maxOut) * 4         // LoRA scratch: xd, t, z / w / d1
        if quantized { transient += maxWeight * (dtype == .bf16 ? 6 : 4) }   // one layer expanded
        if dtype == .bf16 { transient += n * max(maxIn, maxOut) * 2 }  // bf16 copy of x / dy
        return TrainingActivationBytes(saved: saved, transient: transient)
    }
}
