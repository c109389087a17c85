/// Builds GGUF bytes by hand so tests can craft valid and corrupt files precisely.
struct GGUFBuilder {
    enum Value {
        case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float)
        case bool(UInt8), string(String), u64(UInt64), i64(Int64), f64(Double)
        /// Array with an explicit element type tag and (possibly lying) count.
        case array(type: UInt32, count: UInt64, items: [Value])
        /// A string whose declared length is `length` (possibly lying).
        case rawString(length: UInt64, bytes: [UInt8])
        /// Any type tag followed by arbitrary payload bytes.
        case custom(tag: UInt32, payload: [UInt8])

        var tag: UInt32 {
            switch self {
            case .u8: return 0
            case .i8: return 1
            case .u16: return 2
            case .i16: return 3
            case .u32: return 4
            case .i32: return 5
            case .f32: return 6
            case .bool: return 7
            case .string, .rawString: return 8
            case .array: return 9
            case .u64: return 10
            case .i64: return 11
            case .f64: return 12
            case .custom(let tag, _): return tag
            }
        }

        func encode(into b: inout [UInt8]) {
            switch self {
            case .u8(let v): b.append(v)
            case .i8(let v): b.append(UInt8(bitPattern: v))
            case .u16(let v): b.le(v)
            case .i16(let v): b.le(v)
            case .u32(let v): b.le(v)
            case .i32(let v): b.le(v)
            case .f32(let v): b.le(v.bitPattern)
            case .bool(let v): b.append(v)
            case .string(let s): b.le(UInt64(s.utf8.count)); b.append(contentsOf: s.utf8)
            case .rawString(let n, let bytes): b.le(n); b.append(contentsOf: bytes)
            case .custom(_, let payload): b.append(contentsOf: payload)
            case .u64(let v): b.le(v)
            case .i64(let v): b.le(v)
            case .f64(let v): b.le(v.bitPattern)
            case .array(let type, let count, let items):
                b.le(type)
                b.le(count)
                for i in items { i.encode(into: &b) }
            }
        }
    }

    struct Tensor {
        var name: String
        var dims: [UInt64]
        var type: UInt32
        var data: [UInt8]
        /// Relative offset override (nil: laid out in order, aligned).
        var offset: UInt64? = nil
    }

    /// Byte offsets of the sections of the last build.
    struct Layout {
        var metadataStart = 0
        var tensorInfoStart = 0
        var dataStart = 0
        var size = 0
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var metadata: [(String, Value)] = []
    var tensors: [Tensor] = []
    var alignment = 32
    /// Overrides for the header counts.
    var tensorCountOverride: UInt64? = nil
    var kvCountOverride: UInt64? = nil

    func build() -> ([UInt8], Layout) {
        var b: [UInt8] = []
        var layout = Layout()
        b.append(contentsOf: magic)
        b.le(version)
        b.le(tensorCountOverride ?? UInt64(tensors.count))
        b.le(kvCountOverride ?? UInt64(metadata.count))
        layout.metadataStart = b.count
        for (k, v) in metadata {
            Value.string(k).encode(into: &b)
            b.le(v.tag)
            v.encode(into: &b)
        }
        layout.tensorInfoStart = b.count
        var offset: UInt64 = 0
        var offsets: [UInt64] = []
        for t in tensors {
            offsets.append(offset)
            offset += UInt64((t.data.count + alignment - 1) / alignment * alignment)
        }
        for (i, t) in tensors.enumerated() {
            Value.string(t.name).encode(into: &b)
            b.le(UInt32(t.dims.count))
            for d in t.dims { b.le(d) }
            b.le(t.type)
            b.le(t.offset ?? offsets[i])
        }
        while b.count % alignment != 0 { b.append(0) }
        layout.dataStart = b.count
        for t in tensors {
            b.append(contentsOf: t.data)
            while (b.count - layout.dataStart) % alignment != 0 { b.append(0) }
        }
        layout.size = b.count
        return (b, layout)
    }

    var bytes: [UInt8] { build().0 }
}

extension Array where Element == UInt8 {
    mutating func le<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
