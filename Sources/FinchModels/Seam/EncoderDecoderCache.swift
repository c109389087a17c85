import FinchCore

// Dimension letters: M encoder rows, I the attention's inner width.

/// One sequence's state in generation: the encoder's keys and values for every decoder layer's
/// cross-attention (computed once), and the decoder's own keys and values so far.
public final class EncoderDecoderCache: SequenceState {
    /// M: source tokens.
    public let encoderRows: Int
    /// [M, I] per decoder layer.
    let crossK: [Buffer<Float>], crossV: [Buffer<Float>]
    /// [capacity, I] per decoder layer, rows 0 ..< length filled.
    var selfK: [Buffer<Float>], selfV: [Buffer<Float>]
    /// Decoder tokens already run.
    public private(set) var length = 0
    private(set) var capacity: Int
    let inner: Int

    init(encoderRows: Int, crossK: [Buffer<Float>], crossV: [Buffer<Float>], inner: Int, capacity: Int) {
        self.encoderRows = encoderRows; self.crossK = crossK; self.crossV = crossV; self.inner = inner
        self.capacity = max(1, capacity)
        selfK = crossK.map { _ in Buffer<Float>(uninitializedCount: max(1, capacity) * inner) }
        selfV = crossK.map { _ in Buffer<Float>(uninitializedCount: max(1, capacity) * inner) }
    }

    /// Bytes held: the cross-attention keys and values, and the decoder's own.
    public var byteCount: Int { (crossK.count * 2) * (encoderRows + capacity) * inner * 4 }

    public var isRecyclable: Bool { false }

    /// Room for `total` decoder tokens.
    func reserve(_ total: Int) {
        guard total > capacity else { return }
        let cap = max(total, capacity * 2)
        func grown(_ b: Buffer<Float>) -> Buffer<Float> {
            let n = Buffer<Float>(uninitializedCount: cap * inner)
            n.pointer.update(from: b.pointer, count: length * inner)
            return n
        }
        selfK = selfK.map(grown); selfV = selfV.map(grown)
        capacity = cap
    }

    /// Writes `rows` new keys / values [rows, I] of decoder layer `layer` after the first `length`.
    func append(layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, rows: Int) {
        precondition(length + rows <= capacity, "reserve before appending")
        (selfK[layer].pointer + length * inner).update(from: k, count: rows * inner)
        (selfV[layer].pointer + length * inner).update(from: v, count: rows * inner)
    }

    func advance(by rows: Int) { length += rows }
}
