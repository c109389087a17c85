import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import Foundation

// Dimension letters: N rows of a stack (the packed tokens of the encoder, or of the decoder),
// M encoder rows (the keys of cross-attention), C d_model, I inner width (H · D), F d_ff,
// V vocabulary, H heads, D d_kv, B relative-position buckets.

/// The linear layers of a T5 block, by role, with the names PEFT and the checkpoint give them.
enum T5Linear: CaseIterable, Sendable {
    case q, k, v, o
    case crossQ, crossK, crossV, crossO
    case wi, wi0, wi1, wo

    /// The module path inside a block (`layer.0.SelfAttention.q`); `ffn` is the FFN's layer index
    /// (1 in the encoder, 2 in the decoder).
    func module(ffn: Int) -> String {
        switch self {
        case .q: "layer.0.SelfAttention.q"
        case .k: "layer.0.SelfAttention.k"
        case .v: "layer.0.SelfAttention.v"
        case .o: "layer.0.SelfAttention.o"
        case .crossQ: "layer.1.EncDecAttention.q"
        case .crossK: "layer.1.EncDecAttention.k"
        case .crossV: "layer.1.EncDecAttention.v"
        case .crossO: "layer.1.EncDecAttention.o"
        case .wi: "layer.\(ffn).DenseReluDense.wi"
        case .wi0: "layer.\(ffn).DenseReluDense.wi_0"
        case .wi1: "layer.\(ffn).DenseReluDense.wi_1"
        case .wo: "layer.\(ffn).DenseReluDense.wo"
        }
    }
}

/// One T5 block's weights: self-attention, cross-attention (decoder blocks), the FFN, and the
/// RMS-style norms before each (T5's LayerNorm: no mean, no bias).
final class T5Block: @unchecked Sendable {
    private var linears: [T5Linear: any LinearLayer]
    /// [C] before self-attention, cross-attention (decoder) and the FFN.
    let selfNorm: Buffer<Float>
    let crossNorm: Buffer<Float>?
    let ffnNorm: Buffer<Float>

    init(linears: [T5Linear: any LinearLayer], selfNorm: Buffer<Float>, crossNorm: Buffer<Float>?, ffnNorm: Buffer<Float>) {
        self.linears = linears; self.selfNorm = selfNorm; self.crossNorm = crossNorm; self.ffnNorm = ffnNorm
    }

    var roles: [T5Linear] { T5Linear.allCases.filter { linears[$0] != nil } }

    subscript(_ l: T5Linear) -> any LinearLayer {
        get { linears[l]! }
        set { linears[l] = newValue }
    }
}

/// T5 (`T5ForConditionalGeneration`: T5, T5 v1.1, Flan-T5): an encoder over the source and a
/// decoder over the target that attends to it. Relative position buckets give each head a bias
/// added to its attention scores (bidirectional in the encoder, causal in the decoder, computed by
/// the first block of each stack and shared by the others); no score scaling; FFN `wi → act → wo`
/// or gated `act(wi_0) · wi_1 → wo`; the decoder's output is rescaled by d_model^-0.5 before the LM
/// head when `tie_word_embeddings` (original T5).
///
/// One block forward (`blockForward`) serves training (packed rows, saved activations) and cached
/// generation (`encode` once, then `decode` token by token). Not thread-safe.
public final class T5Model: @unchecked Sendable {
    public let config: T5Config
    public let dtype: WeightDType
    let activation: Activation
    let shared: LinearWeight            // [V, C]
    let lmHead: LinearWeight            // [V, C], the same object as `shared` when the head is tied
    /// [V, C] in use by each stack and as the head: the frozen ones, or the active adapter's trained copies
    /// (`modules_to_save`: PEFT copies `encoder.embed_tokens`, `decoder.embed_tokens` and `lm_head` apart).
    private(set) var encoderEmbedding: LinearWeight, decoderEmbedding: LinearWeight, head: LinearWeight
    let encoderBias: Buffer<Float>      // [B, H]
    let decoderBias: Buffer<Float>      // [B, H]
    let encoderFinalNorm: Buffer<Float> // [C]
    let decoderFinalNorm: Buffer<Float> // [C]
    let encoder: [T5Block]
    let decoder: [T5Block]
    let scratch = Scratch()
    /// Buffers of the last inference pass and of the last training pass, reused while they fit.
    var work: T5Workspace?
    var trainingWork: T5Workspace?
    public var backend: any ComputeBackend = CPUBackend.shared
    public var adapterConfigs: [String: AdapterConfig] = [:]
    public var moduleCopies: [String: [String: ModuleCopy]] = [:]
    public var tokenRows: [String: TokenRows] = [:]
    public let linearSlots: [LinearSlot]

    init(config: T5Config, dtype: WeightDType, shared: LinearWeight, lmHead: LinearWeight, encoderBias: Buffer<Float>,
         decoderBias: Buffer<Float>, encoderFinalNorm: Buffer<Float>, decoderFinalNorm: Buffer<Float>,
         encoder: [T5Block], decoder: [T5Block]) throws {
        self.config = config; self.dtype = dtype; activation = try config.activation
        self.shared = shared; self.lmHead = lmHead; self.encoderBias = encoderBias; self.decoderBias = decoderBias
        encoderEmbedding = shared; decoderEmbedding = shared; head = lmHead
        self.encoderFinalNorm = encoderFinalNorm; self.decoderFinalNorm = decoderFinalNorm
        self.encoder = encoder; self.decoder = decoder
        var slots: [LinearSlot] = []
        for (stack, blocks, ffn) in [("encoder", encoder, 1), ("decoder", decoder, 2)] {
            for (i, block) in blocks.enumerated() {
                for l in block.roles {
                    slots.append(LinearSlot(name: "\(stack).block.\(i).\(l.module(ffn: ffn))", get: { block[l] }, set: { block[l] = $0 }))
                }
            }
        }
        linearSlots = slots
    }

    public var architecture: String { "t5" }

    /// The FFN's output (`wo`) stays unquantized, as transformers loads T5 (`_keep_in_fp32_modules`).
    public func quantizesAtLoad(_ slot: String) -> Bool { !slot.hasSuffix("DenseReluDense.wo") }
    public var vocabSize: Int { config.vocabSize }
    /// The id generation stops at.
    public var eosTokenIds: [Int] { config.eosTokenId.map { [$0] } ?? [] }
    /// The multiplier of the decoder output before the LM head (d_model^-0.5 for original T5, else none).
    var outputScale: Float? { config.scalesDecoderOutput ? 1 / Float(config.dModel).squareRoot() : nil }

    /// Loads a Hugging Face T5 directory's weights. Strict: a missing tensor, one of another
    /// shape, or one the model does not use is an error; the stacks' `embed_tokens` copies of
    /// `shared` are accepted when equal to it. With `quantization` the blocks' linears except the
    /// FFN's `wo` are quantized as they load (QLoRA, as transformers + bitsandbytes load T5);
    /// embeddings, norms, the position biases and the head stay in `dtype`. Linears stored in 4
    /// bits or int8 (bitsandbytes' layout) are used as stored.
    public static func load(from source: WeightSource, config: T5Config, dtype: WeightDType,
                            quantization: QuantizationConfig? = nil) throws -> T5Model {
        try quantization?.validate()
        let root = WeightScope(source)
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads
        let sharedValues = try root.scoped("shared").tensor("weight", shape: [config.vocabSize, c])
        for stack in ["encoder", "decoder"] {
            let scope = root.scoped(stack).scoped("embed_tokens")
            guard scope.has("weight") else { continue }
            let copy = try scope.tensor("weight", shape: [config.vocabSize, c])
            guard copy.array == sharedValues.array else {
                throw ModelError.invalidConfig(path: source.path, reason: "'\(scope.name("weight"))' differs from 'shared.weight'; T5 shares one embedding between its stacks")
            }
        }
        let shared = LinearWeight(outFeatures: config.vocabSize, inFeatures: c, values: sharedValues, dtype: dtype)
        var lmHead = shared
        if root.scoped("lm_head").has("weight") {
            lmHead = LinearWeight(outFeatures: config.vocabSize, inFeatures: c,
                                  values: try root.scoped("lm_head").tensor("weight", shape: [config.vocabSize, c]), dtype: dtype)
        } else if !config.tieWordEmbeddings {   // a head of its own was declared
            throw ModelError.missingWeight(path: source.path, name: "lm_head.weight")
        }

        // transformers keeps T5's `wo` in full precision when it loads a model in 4 or 8 bits
        // (`_keep_in_fp32_modules`), and so does Finch: QLoRA on T5 trains the same model as qlora.
        func linear(_ scope: WeightScope, _ out: Int, _ inp: Int, quantize: Bool = true) throws -> LinearWeight {
            if quantization == nil, let blocks = try scope.blocks("weight", shape: [out, inp]) {
                return LinearWeight(outFeatures: out, inFeatures: inp, storage: .quantized(blocks, compute: dtype))
            }
            if let stored = try scope.quantized("weight") {
                guard stored.shape == [out, inp] else {
                    throw ModelError.badWeightShape(path: source.path, name: scope.name("weight"), expected: [out, inp], actual: stored.shape)
                }
                if let q = quantization, !q.accepts(stored: stored.storedConfig) {
                    throw ModelError.invalidConfig(path: source.path, reason: "'\(scope.name("weight"))' is stored quantized with other settings than were asked for; leave out --quantize to use it as stored")
                }
                return LinearWeight(outFeatures: out, inFeatures: inp, storage: .quantized(stored, compute: quantization?.computeDType ?? dtype))
            }
            let values = try scope.tensor("weight", shape: [out, inp])
            guard let quantization, quantize else { return LinearWeight(outFeatures: out, inFeatures: inp, values: values, dtype: dtype) }
            return try quantization.linear(outFeatures: out, inFeatures: inp, values: values)
        }
        func blocks(_ stack: String, count: Int, decoder: Bool) throws -> (blocks: [T5Block], bias: Buffer<Float>, norm: Buffer<Float>) {
            let scope = root.scoped(stack)
            var out: [T5Block] = []
            var bias: Buffer<Float>?
            let ffn = decoder ? 2 : 1
            for i in 0..<count {
                let b = scope.scoped("block").scoped(i)
                var linears: [T5Linear: any LinearLayer] = [:]
                var roles: [T5Linear] = [.q, .k, .v, .o]
                if decoder { roles += [.crossQ, .crossK, .crossV, .crossO] }
                roles += config.isGated ? [.wi0, .wi1, .wo] : [.wi, .wo]
                for l in roles {
                    let m = b.scoped(l.module(ffn: ffn))
                    switch l {
                    case .q, .k, .v, .crossQ, .crossK, .crossV: linears[l] = try linear(m, inner, c)
                    case .o, .crossO: linears[l] = try linear(m, c, inner)
                    case .wi, .wi0, .wi1: linears[l] = try linear(m, f, c)
                    case .wo: linears[l] = try linear(m, c, f, quantize: false)
                    }
                }
                let biasScope = b.scoped("layer.0.SelfAttention.relative_attention_bias")
                if i == 0 {
                    bias = try biasScope.tensor("weight", shape: [config.relativeAttentionNumBuckets, h])
                } else if biasScope.has("weight") {
                    throw ModelError.invalidConfig(path: source.path, reason: "'\(biasScope.name("weight"))': T5 computes the position bias in the first block of each stack only; this checkpoint has one in block \(i)")
                }
                out.append(T5Block(linears: linears,
                                   selfNorm: try b.scoped("layer.0.layer_norm").tensor("weight", shape: [c]),
                                   crossNorm: decoder ? try b.scoped("layer.1.layer_norm").tensor("weight", shape: [c]) : nil,
                                   ffnNorm: try b.scoped("layer.\(ffn).layer_norm").tensor("weight", shape: [c])))
            }
            return (out, bias!, try scope.scoped("final_layer_norm").tensor("weight", shape: [c]))
        }
        let enc = try blocks("encoder", count: config.numLayers, decoder: false)
        let dec = try blocks("decoder", count: config.decoderLayers, decoder: true)
        // The original T5 checkpoints carry a position table for the first cross-attention that the
        // model never uses (cross-attention has no position bias); transformers ignores it too.
        let unused = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
        if source.shape(of: unused) != nil { root.take(unused) }
        try root.finish()
        return try T5Model(config: config, dtype: dtype, shared: shared, lmHead: lmHead, encoderBias: enc.bias,
                           decoderBias: dec.bias, encoderFinalNorm: enc.norm, decoderFinalNorm: dec.norm,
                           encoder: enc.blocks, decoder: dec.blocks)
    }

    /// Loads a Hugging Face T5 directory (config.json + safetensors).
    public static func load(directory: String, dtype: WeightDType = .f32, quantization: QuantizationConfig? = nil) throws -> T5Model {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.notFound(path: path, hint: "An HF-layout model directory needs config.json.")
        }
        let config = try T5Config(json: data, path: path)
        return try load(from: try SafeTensorsWeightSource(directory: directory), config: config, dtype: dtype,
                        quantization: quantization)
    }

    // MARK: - Position bias

    /// bias [H, Q, K] of one sequence: the bucket table's value for each (head, query, key), the
    /// query at position `firstQuery + i`, keys at positions 0 ..< K.
    func positionBias(decoder isDecoder: Bool, queries: Int, keys: Int, firstQuery: Int) -> Buffer<Float> {
        let h = config.numHeads
        let table = isDecoder ? decoderBias : encoderBias
        let out = Buffer<Float>(uninitializedCount: max(1, h * queries * keys))
        // The bucket of each relative distance key − query, from −(Q − 1 + firstQuery) to K − 1.
        let lowest = -(queries - 1 + firstQuery)
        let buckets = (lowest..<max(keys, lowest + 1)).map { config.bucket(relative: $0, bidirectional: !isDecoder) }
        for i in 0..<queries {
            for j in 0..<keys {
                let b = buckets[j - (firstQuery + i) - lowest]
                for head in 0..<h { out[(head * queries + i) * keys + j] = table[b * h + head] }
            }
        }
        return out
    }

    // MARK: - Pieces shared by training and generation

    /// x [N, C] = rows of the embedding `table` (the stack's in use; T5 does not scale them).
    func embed(_ tokens: [Int], into x: UnsafeMutablePointer<Float>, table: LinearWeight) throws {
        try embed(tokens, into: x) { _ in table }
    }

    /// x [N, C] = each row from its own embedding (`table(row)`: per-request adapters' copies).
    func embed(_ tokens: [Int], into x: UnsafeMutablePointer<Float>, table: (Int) -> LinearWeight) throws {
        let c = config.dModel
        for (i, t) in tokens.enumerated() {
            guard t >= 0 && t < config.vocabSize else {
                throw ModelError.tokenOutOfVocabulary(token: t, vocab: config.vocabSize, place: "in the input")
            }
            DecoderModel.copyRow(t, of: table(i), to: x + i * c)
        }
    }

    /// The modules an adapter may train in full (PEFT's `modules_to_save` on T5): each stack's `embed_tokens`
    /// (both the shared embedding: PEFT copies them apart) and the LM head; and `shared` itself, whose copy, as in
    /// PEFT, no stack reads (they read their `embed_tokens`), but whose rows trainable tokens train (PEFT's
    /// `shared.token_adapter`): both stacks', and an original T5's head tied to it.
    public var copyableModules: [String: LinearWeight] {
        ["shared": shared, "encoder.embed_tokens": shared, "decoder.embed_tokens": shared, "lm_head": lmHead]
    }

    /// Trainable tokens train rows of `shared`.
    public var inputEmbeddingName: String? { "shared" }

    public func useModuleCopies(_ copies: [String: ModuleCopy]) {
        encoderEmbedding = copies["encoder.embed_tokens"]?.weight ?? shared
        decoderEmbedding = copies["decoder.embed_tokens"]?.weight ?? shared
        head = copies["lm_head"]?.weight ?? lmHead
    }

    func norm(_ out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, _ x: UnsafePointer<Float>,
              _ w: Buffer<Float>, rows: Int) {
        backend.rmsNormForward(out: out, rstd: rstd, x: x, weight: w.pointer, rows: rows, channels: config.dModel,
                        eps: config.layerNormEpsilon)
    }

    /// Bytes held by the weights.
    public var weightBytes: Int { weightSizes.bytes }
    public var outputHead: LinearWeight { lmHead }
    /// Values of the frozen weights.
    public var parameterCount: Int { weightSizes.values }

    private var weightSizes: (values: Int, bytes: Int) {
        var values = 0, bytes = 0
        func add(_ w: LinearWeight) { values += w.outFeatures * w.inFeatures; bytes += w.byteCount }
        func add(_ t: Buffer<Float>?) { if let t { values += t.count; bytes += t.byteCount } }
        add(shared)
        if lmHead !== shared { add(lmHead) }
        add(encoderBias); add(decoderBias); add(encoderFinalNorm); add(decoderFinalNorm)
        for b in encoder + decoder { add(b.selfNorm); add(b.crossNorm); add(b.ffnNorm) }
        for s in linearSlots { add(baseWeight(s.get())) }
        return (values, bytes)
    }
}
