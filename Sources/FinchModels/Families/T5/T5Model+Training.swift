import FinchCore
import FinchLoRA
import FinchQuant
import Foundation

// Dimension letters: N decoder rows (packed), M encoder rows (packed), C d_model, I inner width,
// F d_ff, V vocabulary.

/// Training: the encoder and decoder forward with saved activations (or only each block's input,
/// under gradient checkpointing), the loss on the decoder's rows, and backward through both
/// stacks into the active adapter's gradients; cross-attention carries the decoder's gradient
/// into the encoder.
extension T5Model: TrainableModel {
    /// A batch packed: encoder tokens and each source's rows, decoder inputs and each target's
    /// rows, and the decoder rows' targets.
    struct PackedPairs {
        var source: [Int] = [], sourceRanges: [Range<Int>] = []
        var decoder: [Int] = [], decoderRanges: [Range<Int>] = []
        var targets: [Int32] = []
    }

    func pack(_ batch: [TrainingSequence]) throws -> PackedPairs {
        var p = PackedPairs()
        for (i, s) in batch.enumerated() {
            guard let src = s.source, !src.isEmpty else {
                throw ModelError.badTrainingSequence(index: i, reason: "no source tokens: T5 is an encoder-decoder model and trains on (source, target) pairs")
            }
            guard s.tokens.count >= 2, s.labels.count == s.tokens.count else {
                throw ModelError.badTrainingSequence(index: i, reason: "needs the decoder start id and at least one target token, with one label per token")
            }
            for t in src + s.tokens where t < 0 || Int(t) >= config.vocabSize {
                throw ModelError.tokenOutOfVocabulary(token: Int(t), vocab: config.vocabSize, place: "in training pair \(i)")
            }
            p.sourceRanges.append(p.source.count..<(p.source.count + src.count))
            p.source += src.map(Int.init)
            let rows = s.tokens.count - 1   // the last token is only a target
            p.decoderRanges.append(p.decoder.count..<(p.decoder.count + rows))
            p.decoder += s.tokens.dropLast().map(Int.init)
            p.targets += s.labels.dropFirst()
        }
        return p
    }

    func selfSegments(_ ranges: [Range<Int>], decoder isDecoder: Bool) -> [T5SelfSegment] {
        ranges.map { T5SelfSegment(rows: $0, bias: positionBias(decoder: isDecoder, queries: $0.count, keys: $0.count, firstQuery: 0), cache: nil) }
    }

    /// The decoder over packed rows after the encoder: its final-normed (and rescaled) output,
    /// its pre-norm rows and statistics, and each block's activations.
    func runDecoder(_ p: PackedPairs, encoderOutput: Buffer<Float>, segments: [T5SelfSegment], keep: Bool,
                    checkpointing: Bool, context: PassContext) throws -> (output: Buffer<Float>, preNorm: Buffer<Float>, rstd: Buffer<Float>, acts: [T5BlockActs]) {
        let n = p.decoder.count, c = config.dModel
        let y = Buffer<Float>(uninitializedCount: max(1, n * c))
        try embed(p.decoder, into: y.pointer)
        var acts: [T5BlockActs] = []
        for (li, block) in decoder.enumerated() {
            let a = keep ? T5BlockActs(rows: n, x: Buffer(copying: y.pointer, count: n * c)) : nil
            blockForward(block, layer: li, x: y.pointer, rows: n, selfSegments: segments, causal: true,
                         cross: .compute(encoderOutput: encoderOutput.pointer, rows: p.source.count, ranges: p.sourceRanges),
                         acts: checkpointing ? nil : a, context: context)
            if let a { acts.append(a) }
        }
        let out = Buffer<Float>(uninitializedCount: max(1, n * c)), rstd = Buffer<Float>(uninitializedCount: max(1, n))
        norm(out.pointer, rstd: rstd.pointer, y.pointer, decoderFinalNorm, rows: n)
        if let s = outputScale { for i in 0..<(n * c) { out[i] *= s } }
        return (out, y, rstd, acts)
    }

    public func forwardBackward(_ batch: [TrainingSequence], options: TrainingPassOptions) throws -> LossSum {
        let p = try pack(batch)
        let n = p.decoder.count, m = p.source.count, c = config.dModel
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        let count = CrossEntropy.countTargets(p.targets, rows: n)
        if count == 0 { return LossSum() }
        let context = PassContext(backend: backend, dropoutKey: options.dropoutKey)
        let checkpointing = options.checkpointing

        // Forward.
        let encSegments = selfSegments(p.sourceRanges, decoder: false)
        var encActs: [T5BlockActs] = []
        let enc = try runEncoder(tokens: p.source, ranges: p.sourceRanges, keep: { encActs.append($1) }, checkpointing: checkpointing,
                                 context: context)
        let decSegments = selfSegments(p.decoderRanges, decoder: true)
        let dec = try runDecoder(p, encoderOutput: enc.output, segments: decSegments, keep: true, checkpointing: checkpointing,
                                 context: context)

        // Loss and the LM head's backward (chunked), then the decoder's final norm (and rescale).
        let dOut = Buffer<Float>(count: max(1, n * c))
        let loss = try p.targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForwardBackward(dx: dOut.pointer, x: dec.output.pointer, head: lmHead, targets: t.baseAddress!,
                                                   rows: n, scale: options.lossScale ?? 1 / Float(count), scratch: scratch)
        }
        if let s = outputScale { for i in 0..<(n * c) { dOut[i] *= s } }
        let dy = Buffer<Float>(count: max(1, n * c))
        backend.rmsNormBackward(dx: dy.pointer, dweight: nil, dout: dOut.pointer, x: dec.preNorm.pointer, weight: decoderFinalNorm.pointer,
                         rstd: dec.rstd.pointer, rows: n, channels: c)

        // Decoder blocks, last to first; the encoder output's gradient gathers from every cross-attention.
        let dEnc = Buffer<Float>(count: max(1, m * c))
        for li in stride(from: decoder.count - 1, through: 0, by: -1) {
            var acts = dec.acts[li]
            if checkpointing {
                let x = Buffer(copying: acts.x.pointer, count: n * c)
                acts = T5BlockActs(rows: n, x: acts.x)
                blockForward(decoder[li], layer: li, x: x.pointer, rows: n, selfSegments: decSegments, causal: true,
                             cross: .compute(encoderOutput: enc.output.pointer, rows: m, ranges: p.sourceRanges), acts: acts,
                             context: context)
            }
            blockBackward(decoder[li], acts: acts, dx: dy.pointer, selfSegments: decSegments, causal: true,
                          cross: (UnsafePointer(enc.output.pointer), m, p.sourceRanges, dEnc.pointer), context: context)
        }

        // The encoder's final norm, then its blocks.
        let dx = Buffer<Float>(count: max(1, m * c))
        backend.rmsNormBackward(dx: dx.pointer, dweight: nil, dout: dEnc.pointer, x: enc.preNorm.pointer, weight: encoderFinalNorm.pointer,
                         rstd: enc.rstd.pointer, rows: m, channels: c)
        for li in stride(from: encoder.count - 1, through: 0, by: -1) {
            var acts = encActs[li]
            if checkpointing {
                let x = Buffer(copying: acts.x.pointer, count: m * c)
                acts = T5BlockActs(rows: m, x: acts.x)
                blockForward(encoder[li], layer: li, x: x.pointer, rows: m, selfSegments: encSegments, causal: false, cross: nil, acts: acts,
                             context: context)
            }
            blockBackward(encoder[li], acts: acts, dx: dx.pointer, selfSegments: encSegments, causal: false, cross: nil,
                          context: context)
        }
        return LossSum(sum: loss.sum, count: loss.count)
    }

    public func evaluate(_ batch: [TrainingSequence]) throws -> LossSum {
        let p = try pack(batch)
        let n = p.decoder.count
        try CrossEntropy.validate(targets: p.targets, rows: n, vocab: config.vocabSize)
        if CrossEntropy.countTargets(p.targets, rows: n) == 0 { return LossSum() }
        let enc = try runEncoder(tokens: p.source, ranges: p.sourceRanges, keep: nil, context: PassContext(backend: backend))
        let dec = try runDecoder(p, encoderOutput: enc.output, segments: selfSegments(p.decoderRanges, decoder: true),
                                 keep: false, checkpointing: false, context: PassContext(backend: backend))
        let loss = try p.targets.withUnsafeBufferPointer { t in
            try backend.crossEntropyForward(x: dec.output.pointer, head: lmHead, targets: t.baseAddress!, rows: n, scratch: scratch)
        }
        return LossSum(sum: loss.sum, count: loss.count)
    }

    public func releaseTrainingMemory() {}

    /// An estimate for `rows` rows in each stack: every block's kept activations (one block's
    /// under checkpointing, plus each block's input), the loss's logits chunk and the LoRA scratch.
    public func trainingActivationBytes(rows n: Int, checkpointing: Bool, loraRank r: Int) -> TrainingActivationBytes {
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads
        let encoderBlock = n * (4 * c + 5 * inner + 3 * f + 3 * h) + h * n * n
        let decoderBlock = encoderBlock + n * (2 * c + 4 * inner + 2 * h) + h * n * n
        let blocks = checkpointing
            ? (encoder.count + decoder.count) * n * c + max(encoderBlock, decoderBlock)
            : encoder.count * encoderBlock + decoder.count * decoderBlock
        let saved = 4 * (blocks + 6 * n * c)
        let chunk = min(256, n)
        let transient = 4 * (chunk * (config.vocabSize + c) + n * (max(c, f) + r + 3 * max(c, f, inner)))
        return TrainingActivationBytes(saved: saved, transient: transient)
    }

    public func loadPeakBytes(sourceBytesPerValue s: Double) -> Int {
        let values = shared.outFeatures * shared.inFeatures
        return weightBytes + 4 * values + Int(Double(values) * s)
    }

    public var trainingCaveats: [String] { config.trainingCaveats }
    /// PEFT's default for T5: the attention's q and v (self- and cross-attention, both stacks).
    public var defaultTargetModules: [String] { ["q", "v"] }
    public var linearsFanInFanOut: Bool { false }
    public var peftTaskType: String { "SEQ_2_SEQ_LM" }
    public func ggufLoRAAdapter(path: String) throws -> LoRAAdapter {
        throw ModelError.notForKind(what: "\(path): a llama.cpp LoRA adapter", kind: .encoderDecoder, advice: "a T5 adapter is a PEFT directory")
    }
}
