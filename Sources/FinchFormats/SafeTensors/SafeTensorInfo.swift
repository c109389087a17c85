/// One tensor's entry in a safetensors header.
public struct SafeTensorInfo: Sendable, Hashable {
    /// Checkpoint name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    public let name: String
    /// Element type.
    public let dtype: SafeTensorsDType
    /// Shape, row-major (last dimension fastest), as in PyTorch.
    public let shape: [Int]
    /// Byte range of the data, relative to the start of the data buffer (the header's `data_offsets`).
    public let byteRange: Range<Int>

    /// Number of elements (product of `shape`; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }

    /// Creates an entry (readers build these from the header; useful for tests and writers).
    public init(name: String, dtype: SafeTensorsDType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }
}
