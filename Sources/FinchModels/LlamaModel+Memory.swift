import FinchCore
import FinchLoRA

// Dimension letters: N packed rows of a micro-batch, C hidden size, F intermediate size,
// Q = H·D query width, K = G·D key/value width, V vocabulary, L layers, R LoRA rank.

/// Bytes of a training pass beyond the weights and the adapter: what it keeps between forward
/// and backward, and its largest temporaries.
public struct TrainingActivationBytes: Sendable, Equatable {
    /// The training workspace (`LlamaTrainingWorkspace`): every block's saved activations (one
    /// block's worth under gradient checkpointing), the residual stream at each block's input,
    /// and the backward buffers.
    public var saved: Int
    /// The largest temporaries alive during a step: the loss's logits chunk, the LoRA layers'
    /// scratch, a 4-bit layer expanded to the compute type, the bf16 copy of an input.
    public var transient: Int
    public var total: Int { saved + transient }
}

extension LlamaModel {
    /// What a training pass over `rows` packed rows allocates (see `TrainingActivationBytes`),
    /// from the same sizes as `LlamaTrainingWorkspace`, `LlamaLayerActivations`, the LoRA scratch
    /// slots and `CrossEntropy`'s chunked loss.
    public func trainingActivationBytes(rows n: Int, checkpointing: Bool, loraRank r: Int) -> TrainingActivationBytes {
        let c = config.hiddenSize, f = config.intermediateSize, l = config.numHiddenLayers, v = config.vocabSize
        let q = config.numAttentionHeads * config.headDim, k = config.numKeyValueHeads * config.headDim
        let perLayer = n * (2 * q + 2 * k + config.numAttentionHeads + c + 2 * f + 2)   // LlamaLayerActivations
        var floats = (l + 1) * n * c                                  // residual stream
        floats += (checkpointing ? 1 : l) * perLayer
        floats += n * c + n * f + n * c + n                            // xn, h, finalNormed, finalRstd
        floats += 2 * n * c + 2 * n * q + 2 * n * k + 3 * n * f        // dx, dxn, dq, datt, dk, dv, dh, dgate, dup
        let saved = floats * 4 + n * c * 2                             // + xnBF16

        let chunk = min(256, n)
        var transient = (chunk * v + chunk * c) * 4                    // logits [chunk, V] + gathered rows
        var maxIn = 0, maxOut = 0, maxWeight = 0, quantized = false
        for layer in layers {
            for name in LlamaLayer.linearNames {
                let w = Self.baseWeight(layer.linear(name))
                maxIn = max(maxIn, w.inFeatures); maxOut = max(maxOut, w.outFeatures)
                maxWeight = max(maxWeight, w.outFeatures * w.inFeatures)
                if case .quantized = w.storage { quantized = true }
            }
        }
        transient += (n * maxIn + n * r + 3 * n * maxOut) * 4         // LoRA scratch: xd, t, z / w / d1
        if quantized { transient += maxWeight * (dtype == .bf16 ? 6 : 4) }   // one layer expanded
        if dtype == .bf16 { transient += n * max(maxIn, maxOut) * 2 }  // bf16 copy of x / dy
        return TrainingActivationBytes(saved: saved, transient: transient)
    }
}
