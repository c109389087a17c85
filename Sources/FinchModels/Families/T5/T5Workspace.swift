import FinchCore

// Dimension letters: N decoder rows of a call, M encoder rows, C d_model, I inner width (H · D),
// F d_ff, H heads.

/// What one block's forward writes and its backward reads, by name. Sizes are declared once, in
/// `Slot.floats`, and used both to allocate and to predict memory (as `DecoderActivations`).
final class T5BlockActs {
    /// The buffers by name, each with its size.
    enum Slot: CaseIterable {
        case x, h1, rstd1, q, k, v, att, lse, x1, hc, rstdc, cq, ck, cv, catt, clse, x2, h2, rstd2, g, u, a

        /// Floats of this buffer for a block over `n` rows; a decoder block (cross-attention)
        /// computes keys and values over `m` encoder rows. 0 where the block has no use for it.
        func floats(rows n: Int, crossRows m: Int, decoder: Bool, config t: T5Config) -> Int {
            let c = t.dModel, inner = t.innerDim, f = t.dFf, h = t.numHeads, cross = decoder ? 1 : 0
            switch self {
            case .x, .h1, .x2, .h2: return n * c            // block input, normed inputs, FFN input
            case .rstd1, .rstd2: return n
            case .q, .k, .v, .att: return n * inner
            case .lse: return n * h
            case .x1, .hc: return cross * n * c             // cross-attention's input and its normed copy
            case .rstdc: return cross * n
            case .cq, .catt: return cross * n * inner
            case .clse: return cross * n * h
            case .ck, .cv: return cross * m * inner
            case .g, .a: return n * f                       // pre-activation (wi or wi_0), activation output
            case .u: return t.isGated ? n * f : 0          // wi_1 (gated FFNs)
            }
        }
    }

    static func floats(rows n: Int, crossRows m: Int, decoder: Bool, config: T5Config) -> Int {
        Slot.allCases.reduce(0) { $0 + $1.floats(rows: n, crossRows: m, decoder: decoder, config: config) }
    }

    let x, h1, rstd1, q, k, v, att, lse, x1, hc, rstdc, cq, ck, cv, catt, clse, x2, h2, rstd2, g, u, a: Buffer<Float>

    init(rows n: Int, crossRows m: Int, decoder: Bool, config: T5Config) {
        func buffer(_ s: Slot) -> Buffer<Float> { Buffer(uninitializedCount: s.floats(rows: n, crossRows: m, decoder: decoder, config: config)) }
        x = buffer(.x); h1 = buffer(.h1); rstd1 = buffer(.rstd1); q = buffer(.q); k = buffer(.k); v = buffer(.v)
        att = buffer(.att); lse = buffer(.lse); x1 = buffer(.x1); hc = buffer(.hc); rstdc = buffer(.rstdc)
        cq = buffer(.cq); ck = buffer(.ck); cv = buffer(.cv); catt = buffer(.catt); clse = buffer(.clse)
        x2 = buffer(.x2); h2 = buffer(.h2); rstd2 = buffer(.rstd2); g = buffer(.g); u = buffer(.u); a = buffer(.a)
    }
}

/// A block backward's temporaries, by name, shared by every block of both stacks.
final class T5BackwardBuffers {
    enum Slot: CaseIterable {
        case da, dg, du, act, dact, dh, datt, dq, dk, dv

        func floats(rows n: Int, crossRows m: Int, config t: T5Config) -> Int {
            let c = t.dModel, inner = t.innerDim, f = t.dFf, gated = t.isGated ? 1 : 0
            let rows = max(n, m)   // a stack's own rows: N in the decoder, M in the encoder
            switch self {
            case .da, .dg, .dact: return rows * f
            case .du, .act: return gated * rows * f
            case .dh: return rows * c
            case .datt, .dq: return rows * inner
            case .dk, .dv: return rows * inner       // self-attention's own rows, or cross-attention's M keys
            }
        }
    }

    let da, dg, du, act, dact, dh, datt, dq, dk, dv: Buffer<Float>

    init(rows n: Int, crossRows m: Int, config: T5Config) {
        func buffer(_ s: Slot) -> Buffer<Float> { Buffer(uninitializedCount: s.floats(rows: n, crossRows: m, config: config)) }
        da = buffer(.da); dg = buffer(.dg); du = buffer(.du); act = buffer(.act); dact = buffer(.dact)
        dh = buffer(.dh); datt = buffer(.datt); dq = buffer(.dq); dk = buffer(.dk); dv = buffer(.dv)
    }
}

/// The buffers of a pass over up to `rows` decoder rows and `sourceRows` encoder rows, kept on
/// the model and reused while they fit (as `DecoderWorkspace`).
final class T5Workspace {
    enum Mode: Equatable {
        /// One set of block buffers per stack, overwritten block by block; no gradients.
        case inference
        /// Every block's activations (without checkpointing), or one set per stack and each
        /// block's input (with it, the rest recomputed in backward); the backward buffers.
        case training(checkpointing: Bool)
    }

    /// The stacks' streams and the gradients between them, by name.
    enum Slot: CaseIterable {
        case encoderStream, encoderOutput, encoderRstd, decoderStream, decoderOutput, decoderRstd
        case dOutput, dDecoder, dEncoderOutput, dEncoder

        func floats(rows n: Int, sourceRows m: Int, config t: T5Config, mode: Mode) -> Int {
            let c = t.dModel, train = mode == .inference ? 0 : 1
            switch self {
            case .encoderStream, .encoderOutput: return m * c
            case .encoderRstd: return m
            case .decoderStream, .decoderOutput: return n * c
            case .decoderRstd: return n
            case .dOutput, .dDecoder: return train * n * c
            case .dEncoderOutput, .dEncoder: return train * m * c
            }
        }
    }

    let rows, sourceRows: Int
    let mode: Mode
    let encoderActs, decoderActs: [T5BlockActs]
    /// [M, C] / [N, C] each block's input (under gradient checkpointing; otherwise empty).
    let encoderInputs, decoderInputs: [Buffer<Float>]
    let back: T5BackwardBuffers
    let encoderStream, encoderOutput, encoderRstd, decoderStream, decoderOutput, decoderRstd: Buffer<Float>
    let dOutput, dDecoder, dEncoderOutput, dEncoder: Buffer<Float>

    var checkpointing: Bool { mode == .training(checkpointing: true) }

    /// How many sets of block buffers a stack of `layers` blocks keeps.
    static func actSets(layers: Int, mode: Mode) -> Int { mode == .training(checkpointing: false) ? layers : 1 }
    static func inputCopies(layers: Int, mode: Mode) -> Int { mode == .training(checkpointing: true) ? layers : 0 }

    /// Bytes this workspace allocates.
    static func byteCount(rows n: Int, sourceRows m: Int, config t: T5Config, mode: Mode) -> Int {
        let train = mode == .inference ? 0 : 1
        var floats = actSets(layers: t.numLayers, mode: mode) * T5BlockActs.floats(rows: m, crossRows: 0, decoder: false, config: t)
        floats += actSets(layers: t.decoderLayers, mode: mode) * T5BlockActs.floats(rows: n, crossRows: m, decoder: true, config: t)
        floats += (inputCopies(layers: t.numLayers, mode: mode) * m + inputCopies(layers: t.decoderLayers, mode: mode) * n) * t.dModel
        floats += train * T5BackwardBuffers.Slot.allCases.reduce(0) { $0 + $1.floats(rows: n, crossRows: m, config: t) }
        floats += Slot.allCases.reduce(0) { $0 + $1.floats(rows: n, sourceRows: m, config: t, mode: mode) }
        return floats * 4
    }

    init(rows n: Int, sourceRows m: Int, config t: T5Config, mode: Mode) {
        rows = n; sourceRows = m; self.mode = mode
        let train = mode == .inference ? 0 : 1
        encoderActs = (0..<Self.actSets(layers: t.numLayers, mode: mode)).map { _ in T5BlockActs(rows: m, crossRows: 0, decoder: false, config: t) }
        decoderActs = (0..<Self.actSets(layers: t.decoderLayers, mode: mode)).map { _ in T5BlockActs(rows: n, crossRows: m, decoder: true, config: t) }
        encoderInputs = (0..<Self.inputCopies(layers: t.numLayers, mode: mode)).map { _ in Buffer(uninitializedCount: m * t.dModel) }
        decoderInputs = (0..<Self.inputCopies(layers: t.decoderLayers, mode: mode)).map { _ in Buffer(uninitializedCount: n * t.dModel) }
        back = T5BackwardBuffers(rows: train * n, crossRows: train * m, config: t)
        func buffer(_ s: Slot) -> Buffer<Float> { Buffer(uninitializedCount: s.floats(rows: n, sourceRows: m, config: t, mode: mode)) }
        encoderStream = buffer(.encoderStream); encoderOutput = buffer(.encoderOutput); encoderRstd = buffer(.encoderRstd)
        decoderStream = buffer(.decoderStream); decoderOutput = buffer(.decoderOutput); decoderRstd = buffer(.decoderRstd)
        dOutput = buffer(.dOutput); dDecoder = buffer(.dDecoder); dEncoderOutput = buffer(.dEncoderOutput); dEncoder = buffer(.dEncoder)
    }

    /// The buffers block `layer` of a stack writes.
    func acts(decoder: Bool, layer: Int) -> T5BlockActs {
        let sets = decoder ? decoderActs : encoderActs
        return sets[sets.count == 1 ? 0 : layer]
    }
}

extension T5Model {
    /// A workspace for `rows` decoder and `sourceRows` encoder rows in `mode`, reusing the last
    /// one of that mode while it fits (a larger one replaces it, grown in both dimensions).
    func workspace(rows n: Int, sourceRows m: Int, mode: T5Workspace.Mode) -> T5Workspace {
        let current = mode == .inference ? work : trainingWork
        if let w = current, w.mode == mode, w.rows >= n, w.sourceRows >= m { return w }
        let grownRows = max(n, current?.mode == mode ? current!.rows : 0)
        let grownSource = max(m, current?.mode == mode ? current!.sourceRows : 0)
        if mode == .inference { work = nil } else { trainingWork = nil }   // release before allocating the next
        let w = T5Workspace(rows: grownRows, sourceRows: grownSource, config: config, mode: mode)
        if mode == .inference { work = w } else { trainingWork = w }
        return w
    }
}
