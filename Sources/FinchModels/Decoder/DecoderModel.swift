import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import Foundation

// Dimension letters: N rows (the new tokens of all sequences of a call, or the packed tokens of a
// training micro-batch), C hidden size, H query heads, G key/value heads, D head dim,
// F intermediate size, V vocabulary, L layers.

/// One decoder block's weights: its norms, its linear layers (frozen weights, or the same wrapped
/// with adapters: layers are swapped, see `LoRAHost`) and their biases, by role.
final class DecoderLayer: @unchecked Sendable {
    private var linears: [DecoderLinear: any LinearLayer]
    /// [O] per linear that has one.
    let biases: [DecoderLinear: Buffer<Float>]
    /// [C] (or [D] for the q / k norms) per norm, as the norm applies it.
    let norms: [DecoderNorm: Buffer<Float>]
    /// The same as the checkpoint holds them (differs by `DecoderSpec.normWeightOffset`).
    let storedNorms: [DecoderNorm: Buffer<Float>]
    /// [C] per norm, for LayerNorm.
    let normBiases: [DecoderNorm: Buffer<Float>]
    /// The block's mixture of experts, in place of its MLP linears (`DecoderSpec.moe`).
    let moe: SparseMoE?

    init(linears: [DecoderLinear: any LinearLayer], biases: [DecoderLinear: Buffer<Float>],
         norms: [DecoderNorm: Buffer<Float>], storedNorms: [DecoderNorm: Buffer<Float>],
         normBiases: [DecoderNorm: Buffer<Float>], moe: SparseMoE? = nil) {
        self.linears = linears; self.biases = biases; self.norms = norms; self.storedNorms = storedNorms
        self.normBiases = normBiases; self.moe = moe
    }

    subscript(_ l: DecoderLinear) -> any LinearLayer {
        get { linears[l]! }
        set { linears[l] = newValue }
    }

    func norm(_ n: DecoderNorm) -> Buffer<Float> { norms[n]! }
}

/// A decoder-only transformer of any family the registry knows (LLaMA, Mistral, Qwen2, Qwen3, Gemma 3, GPT-2):
/// its `DecoderSpec` says what the blocks are made of, its `DecoderNames` what the checkpoint
/// calls each weight. One block (`blockForward`, `blockBackward`) serves cached inference and
/// packed training.
///
/// Not thread-safe: one forward pass at a time (each pass uses every core).
public final class DecoderModel: CausalLM, @unchecked Sendable {
    public internal(set) var spec: DecoderSpec
    public let names: DecoderNames
    /// The family's config, which writes `config.json` on export.
    public internal(set) var config: any DecoderConfig
    /// Storage type of the linear and embedding weights.
    public let dtype: WeightDType
    /// [V, C] in use: the frozen one, or the active adapter's trained copy (`modules_to_save`).
    private(set) var embedding: LinearWeight
    /// [V, C] in use: the same object as `embedding` when tied (and neither is a copy).
    private(set) var lmHead: LinearWeight
    /// The frozen ones, as loaded (or grown, `growVocabulary`).
    var baseEmbedding: LinearWeight, baseHead: LinearWeight
    /// The vocabulary as loaded, when `growVocabulary` grew it.
    public internal(set) var vocabularyBeforeGrowth: Int?
    let finalNorm: Buffer<Float>         // [C] as applied
    let finalNormStored: Buffer<Float>   // [C] as the checkpoint holds it
    let finalNormBias: Buffer<Float>?    // [C] (LayerNorm)
    /// [P, C] learned positions (GPT-2), P = `spec.maxPositions`.
    let positionEmbedding: LinearWeight?
    let layers: [DecoderLayer]
    let scratch = Scratch()
    public var backend: any ComputeBackend = CPUBackend.shared
    /// Buffers of the last inference call, reused.
    var work: DecoderWorkspace?
    /// Training buffers, kept between steps (see DecoderModel+Training.swift).
    var trainingWork: DecoderWorkspace?
    public var adapterConfigs: [String: AdapterConfig] = [:]
    public var moduleCopies: [String: [String: ModuleCopy]] = [:]
    public var tokenRows: [String: TokenRows] = [:]
    /// Every block linear, in checkpoint order (the slots read and swap the layers' entries, so
    /// they are made once).
    public let linearSlots: [LinearSlot]

    init(config: any DecoderConfig, spec: DecoderSpec, names: DecoderNames, dtype: WeightDType, embedding: LinearWeight,
         lmHead: LinearWeight, finalNorm: Buffer<Float>, finalNormStored: Buffer<Float>, finalNormBias: Buffer<Float>?,
         positionEmbedding: LinearWeight?, layers: [DecoderLayer]) {
        self.config = config; self.spec = spec; self.names = names; self.dtype = dtype
        self.embedding = embedding; self.lmHead = lmHead; self.finalNorm = finalNorm
        baseEmbedding = embedding; baseHead = lmHead
        self.finalNormStored = finalNormStored; self.finalNormBias = finalNormBias
        self.positionEmbedding = positionEmbedding; self.layers = layers
        var slots: [LinearSlot] = []
        for (i, layer) in layers.enumerated() {
            for l in spec.linears(layer: i) {
                slots.append(LinearSlot(name: names.module(l, layer: i), get: { layer[l] }, set: { layer[l] = $0 }))
            }
            if let moe = layer.moe { slots += Self.expertSlots(moe, layer: i, names: names) }
        }
        linearSlots = slots
    }

    /// The router's, every expert's and the shared expert's linears (and its gate), under the checkpoint's
    /// per-expert names (PEFT's target modules in that layout), in `DecoderNames.expertModules`' order.
    static func expertSlots(_ moe: SparseMoE, layer i: Int, names: DecoderNames) -> [LinearSlot] {
        var slots = [LinearSlot(name: names.router(layer: i), get: { moe.router }, set: { moe.router = $0 })]
        for e in moe.experts.indices {
            slots.append(LinearSlot(name: names.expert(e, .gate, layer: i), get: { moe.experts[e].gate }, set: { moe.experts[e].gate = $0 }))
            slots.append(LinearSlot(name: names.expert(e, .up, layer: i), get: { moe.experts[e].up }, set: { moe.experts[e].up = $0 }))
            slots.append(LinearSlot(name: names.expert(e, .down, layer: i), get: { moe.experts[e].down }, set: { moe.experts[e].down = $0 }))
        }
        if moe.shared != nil {
            slots.append(LinearSlot(name: names.sharedExpert(.gate, layer: i), get: { moe.shared!.gate }, set: { moe.shared!.gate = $0 }))
            slots.append(LinearSlot(name: names.sharedExpert(.up, layer: i), get: { moe.shared!.up }, set: { moe.shared!.up = $0 }))
            slots.append(LinearSlot(name: names.sharedExpert(.down, layer: i), get: { moe.shared!.down }, set: { moe.shared!.down = $0 }))
            slots.append(LinearSlot(name: names.sharedExpertGate(layer: i), get: { moe.sharedGate! }, set: { moe.sharedGate = $0 }))
        }
        return slots
    }

    /// transformers 5 keeps each layer's experts fused as `model.layers.L.mlp.experts` and its router as
    /// `model.layers.L.mlp.gate` (every family; Mixtral's per-expert layout says `block_sparse_moe`).
    public var fusedExpertTargets: FusedExpertTargets? {
        guard spec.moe != nil else { return nil }
        var blocks: [String: FusedExpertTargets.Block] = [:], aliases: [String: String] = [:]
        for i in 0..<spec.numLayers {
            guard let m = spec.moe(layer: i) else { continue }
            let path = "\(names.layerPrefix).\(i).mlp"
            let experts = 0..<m.experts
            blocks[path + ".experts"] = .init(experts: m.experts, hidden: spec.hiddenSize, size: m.expertSize,
                                              gate: experts.map { names.expert($0, .gate, layer: i) },
                                              up: experts.map { names.expert($0, .up, layer: i) },
                                              down: experts.map { names.expert($0, .down, layer: i) })
            if names.router(layer: i) != path + ".gate" { aliases[path + ".gate"] = names.router(layer: i) }
        }
        return FusedExpertTargets(blocks: blocks, aliases: aliases)
    }

    public var architecture: String { spec.family }
    public var vocabSize: Int { spec.vocabSize }
    public var eosTokenIds: [Int] { spec.eosTokenIds }
    public var maxPositions: Int { spec.maxPositions }
    public var defaultTargetModules: [String] { config.defaultTargetModules }
    public var linearsFanInFanOut: Bool { names.linearsTransposed }
    public func ggufLoRAAdapter(path: String) throws -> LoRAAdapter { try config.ggufLoRAAdapter(path: path) }
    public var trainingCaveats: [String] { config.trainingCaveats }

    /// The embedding and the LM head (one module each, also when tied: PEFT copies them apart).
    public var copyableModules: [String: LinearWeight] { [names.embedding: baseEmbedding, names.head: baseHead] }
    public var inputEmbeddingName: String? { names.embedding }

    public func useModuleCopies(_ copies: [String: ModuleCopy]) {
        embedding = copies[names.embedding]?.weight ?? baseEmbedding
        lmHead = copies[names.head]?.weight ?? baseHead
    }

    /// Bytes held by the weights.
    public var weightBytes: Int { weightSizes.bytes }
    public var outputHead: LinearWeight { lmHead }

    /// Values of the frozen weights (parameters).
    public var parameterCount: Int { weightSizes.values }

    /// Values and bytes of every frozen tensor: embedding, LM head when untied, norms, biases,
    /// block linears (an adapter's trained copies of the embedding and head are its own).
    private var weightSizes: (values: Int, bytes: Int) {
        var values = 0, bytes = 0
        func add(_ v: Int, _ b: Int) { values += v; bytes += b }
        func add(_ w: LinearWeight) { add(w.outFeatures * w.inFeatures, w.byteCount) }
        func add(_ t: Buffer<Float>?) { if let t { add(t.count, t.byteCount) } }
        add(baseEmbedding); add(finalNorm); add(finalNormBias)
        if let p = positionEmbedding { add(p) }
        if baseHead !== baseEmbedding { add(baseHead) }
        for l in layers {
            for n in spec.norms { add(l.norm(n)); add(l.normBiases[n]) }
            for b in l.biases.values { add(b) }
        }
        for s in linearSlots { add(baseWeight(s.get())) }
        return (values, bytes)
    }

    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: spec.numLayers, kvHeads: spec.numKVHeads, headDim: spec.headDim, capacity: capacity)
    }

    /// The rotary tables of a call, one per distinct rotary embedding of the layers (none for learned positions).
    struct RotaryTables {
        let tables: [RoPE.Table]
        let ofLayer: [Int]
        subscript(layer: Int) -> RoPE.Table? { ofLayer.isEmpty ? nil : tables[ofLayer[layer]] }

        init(spec: DecoderSpec, positions: [Int32]) {
            var distinct: [RoPE] = [], tables: [RoPE.Table] = [], of: [Int] = []
            for r in spec.ropes {
                if let i = distinct.firstIndex(of: r) { of.append(i); continue }
                distinct.append(r); tables.append(r.table(positions: positions)); of.append(distinct.count - 1)
            }
            self.tables = tables; ofLayer = of
        }
    }

    public func forward(_ inputs: [SequenceInput], logits selection: LogitsSelection, context: PassContext) throws -> Logits {
        let c = spec.hiddenSize, vocab = spec.vocabSize
        var tokens: [Int] = []
        var positions: [Int32] = []
        var segments: [CachedSegment] = []
        for input in inputs {
            guard !input.tokens.isEmpty else { throw ModelError.emptySequence(what: "a sequence's new input in the batch") }
            for t in input.tokens where t < 0 || t >= vocab {
                throw ModelError.tokenOutOfVocabulary(token: t, vocab: vocab, place: "in the input")
            }
            if segments.contains(where: { $0.cache === input.cache }) {
                throw ModelError.sharedSequenceState
            }
            let past = input.cache.length
            segments.append(CachedSegment(start: tokens.count, count: input.tokens.count, cache: input.cache))
            tokens += input.tokens
            positions += (0..<input.tokens.count).map { Int32(past + $0) }
            input.cache.reserve(past + input.tokens.count)
        }
        let n = tokens.count
        if let spans = context.rowAdapters { try checkRowAdapters(spans, rows: n) }
        let w: DecoderWorkspace
        if let old = work, old.rows >= n { w = old } else {
            work = nil
            w = DecoderWorkspace(rows: max(n, 1), spec: spec, mode: .inference)
            work = w
        }
        let x = w.residual[0].pointer   // [N, C], updated in place block by block
        // Per-row adapters: each row's embedding and head are its adapter's (a modules_to_save copy, or
        // trainable tokens' rows in place), else the frozen ones, as the layers route their products.
        let perRow = rowCopies(context.rowAdapters, rows: n)
        try embedRows(tokens, positions: positions, into: x,
                      table: perRow.map { rc in { [names, baseEmbedding] r in rc[r][names.embedding]?.weight ?? baseEmbedding } })
        let tables = RotaryTables(spec: spec, positions: positions)
        for li in 0..<layers.count {
            blockForward(li, x: x, out: x, acts: w.layers[0], w: w, rows: n, attention: .cached(segments),
                         rope: tables[li], context: PassContext(backend: backend, rowAdapters: context.rowAdapters))
        }
        for s in segments { s.cache.advance(by: s.count) }

        // Select rows, final norm, LM head.
        var picked: [Int] = []
        var ranges: [Range<Int>] = []
        for s in segments {
            let first = picked.count
            switch selection {
            case .all: picked += Array(s.start..<(s.start + s.count))
            case .last: picked.append(s.start + s.count - 1)
            }
            ranges.append(first..<picked.count)
        }
        let r = picked.count
        let sel = Buffer<Float>(count: r * c)
        for (i, row) in picked.enumerated() { (sel.pointer + i * c).update(from: x + row * c, count: c) }
        normForward(out: sel.pointer, stats: nil, x: sel.pointer, weight: finalNorm, bias: finalNormBias, rows: r)
        let out = Buffer<Float>(count: r * vocab)
        guard let perRow else {
            backend.linearForward(lmHead, y: out.pointer, x: sel.pointer, xBF16: nil, rows: r, accumulate: false, scratch: scratch)
            return Logits(values: out, vocabSize: vocab, rows: ranges)
        }
        backend.linearForward(rowWeights: picked.map { perRow[$0][names.head]?.weight ?? baseHead }, y: out.pointer, x: sel.pointer,
                              scratch: scratch)
        return Logits(values: out, vocabSize: vocab, rows: ranges)
    }

    /// x [N, C] = rows of the embedding matrix (scaled where the family scales them), plus the
    /// learned position embedding of each row's position where the family has one.
    /// `table` (per row): the embedding a row looks up (default: the one in use).
    func embedRows(_ tokens: [Int], positions: [Int32], into x: UnsafeMutablePointer<Float>,
                   table: ((Int) -> LinearWeight)? = nil) throws {
        let c = spec.hiddenSize
        for (i, t) in tokens.enumerated() { Self.copyRow(t, of: table?(i) ?? embedding, to: x + i * c) }
        if let s = embeddingScale { backend.scale(x, count: tokens.count * c, by: s) }
        if let pe = positionEmbedding {
            let rows = Buffer<Float>(count: positions.count * c)   // [N, C] the positions' rows, added in one pass
            for (i, p) in positions.enumerated() {
                guard Int(p) < spec.maxPositions else {
                    throw ModelError.positionPastLimit(position: Int(p), limit: spec.maxPositions)
                }
                Self.copyRow(Int(p), of: pe, to: rows.pointer + i * c)
            }
            backend.add(x, rows.pointer, count: positions.count * c)
        }
    }

    /// Row `r` of an embedding-like matrix as f32.
    static func copyRow(_ r: Int, of m: LinearWeight, to out: UnsafeMutablePointer<Float>) {
        let c = m.inFeatures
        switch m.storage {
        case .f32(let e): out.update(from: e.pointer + r * c, count: c)
        case .bf16(let e): BFloat16.convert(e.pointer + r * c, to: out, count: c)
        case .quantized(let q, _): q.expandRows(r..<(r + 1), into: out)   // a GGUF embedding kept in its blocks
        }
    }

    /// The embedding scale as the model applies it: rounded to bf16 when the weights are bf16,
    /// as transformers casts it to the weights' dtype.
    var embeddingScale: Float? {
        guard let s = spec.embeddingScale else { return nil }
        return dtype == .bf16 ? BFloat16.toFloat(BFloat16.from(s)) : s
    }
}
