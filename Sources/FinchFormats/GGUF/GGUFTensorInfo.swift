/// One tensor's entry in a GGUF file, with its data location already resolved and validated.
public struct GGUFTensorInfo: Sendable, Hashable {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    public let name: String
    /// Storage type.
    public let type: GGMLType
    /// Dimensions in ggml order: `dimensions[0]` (ne0) is the fastest-varying (row length),
    /// i.e. the reverse of the PyTorch / NumPy shape.
    public let dimensions: [Int]
    /// Absolute byte offset of the data in the file.
    public let offset: Int
    /// Bytes of data (`elementCount / blockSize * typeSize`).
    public let byteCount: Int

    /// Number of elements (product of `dimensions`, 1 for zero dimensions).
    public var elementCount: Int { dimensions.reduce(1, *) }

    /// The shape in PyTorch / NumPy order (slowest-varying first): `dimensions.reversed()`.
    public var shape: [Int] { dimensions.reversed() }

    /// Creates an entry (``GGUFFile`` builds these from the header; useful for tests and writers).
    public init(name: String, type: GGMLType, dimensions: [Int], offset: Int, byteCount: Int) {
        self.name = name
        self.type = type
        self.dimensions = dimensions
        self.offset = offset
        self.byteCount = byteCount
    }
}
