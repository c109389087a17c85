/// An owned, 64-byte-aligned, uninitialized-then-filled array of a trivial element type.
///
/// Tensors in Finch are plain buffers plus a shape comment at the use site (llm.c style);
/// this type only owns memory. Memory comes zeroed unless asked for uninitialized.
public final class Buffer<Element: BitwiseCopyable>: @unchecked Sendable {
    /// First element.
    public let pointer: UnsafeMutablePointer<Element>
    /// Number of elements.
    public let count: Int
    /// Releases memory the buffer does not own (see `init(external:count:release:)`); nil = allocated here.
    private let release: (@Sendable () -> Void)?

    /// Allocates `count` zeroed elements.
    public convenience init(count: Int) {
        self.init(uninitializedCount: count)
        UnsafeMutableRawPointer(pointer).initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1) * MemoryLayout<Element>.stride)
    }

    /// Allocates `count` elements without clearing them (for buffers about to be overwritten).
    public init(uninitializedCount count: Int) {
        precondition(count >= 0)
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
        release = nil
    }

    /// Wraps memory obtained elsewhere (e.g. a file mapping), already initialized; `release`
    /// runs when the buffer is freed (e.g. `munmap`).
    public init(external pointer: UnsafeMutablePointer<Element>, count: Int, release: @escaping @Sendable () -> Void) {
        self.pointer = pointer
        self.count = count
        self.release = release
    }

    /// Copies `array` into a new buffer.
    /// A copy of `count` elements at `pointer`.
    public convenience init(copying pointer: UnsafePointer<Element>, count: Int) {
        self.init(uninitializedCount: count)
        self.pointer.update(from: pointer, count: count)
    }

    public convenience init(_ array: [Element]) {
        self.init(count: array.count)
        array.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: array.count) }
        }
    }

    deinit {
        if let release { release() } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    /// The elements as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Element> { .init(start: pointer, count: count) }

    /// A copy of the elements as an array.
    public var array: [Element] { Array(buffer) }

    /// Size in bytes.
    public var byteCount: Int { count * MemoryLayout<Element>.stride }

    public subscript(i: Int) -> Element {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}
