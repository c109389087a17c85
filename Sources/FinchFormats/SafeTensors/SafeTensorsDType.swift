/// Element types of the safetensors format, spelled as in the header's `"dtype"` field.
public enum SafeTensorsDType: String, Sendable, CaseIterable, Hashable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    case u8 = "U8"
    case bool = "BOOL"
    /// OCP FP8 E4M3 (PyTorch `float8_e4m3fn`: no infinities).
    case f8E4M3 = "F8_E4M3"
    /// OCP FP8 E5M2 (PyTorch `float8_e5m2`).
    case f8E5M2 = "F8_E5M2"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8E4M3, .f8E5M2: return 1
        }
    }

    /// True for the floating-point types.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8E4M3, .f8E5M2: return true
        default: return false
        }
    }

    /// Rank in the reference implementation's `Dtype` ordering; its writer lays tensors out
    /// by descending rank (then name), which keeps every tensor aligned to its element size.
    var referenceOrder: Int {
        switch self {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .f8E5M2: return 3
        case .f8E4M3: return 4
        case .i16: return 5
        case .u16: return 6
        case .f16: return 7
        case .bf16: return 8
        case .i32: return 9
        case .u32: return 10
        case .f32: return 11
        case .f64: return 12
        case .i64: return 13
        case .u64: return 14
        }
    }
}

extension SafeTensorsDType {
    /// Converts `count` little-endian elements of this type at `src` (any alignment) to Float at `dst`.
    ///
    /// Floats are widened exactly (F64 is rounded to nearest), integers are rounded to nearest
    /// Float as NumPy's `astype(float32)` does, BOOL becomes 0 or 1.
    public func convertToFloat(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .f32:
            dst.withMemoryRebound(to: UInt8.self, capacity: count * 4) {
                $0.update(from: src.assumingMemoryBound(to: UInt8.self), count: count * 4)
            }
        case .f16: HalfConversion.f16ToFloat(src, dst, count: count)
        case .bf16: HalfConversion.bf16ToFloat(src, dst, count: count)
        case .f64:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .u64:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        case .i32:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .u32:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .i16:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .u16:
            for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .i8:
            let p = src.assumingMemoryBound(to: Int8.self)
            for i in 0..<count { dst[i] = Float(p[i]) }
        case .u8:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = Float(p[i]) }
        case .bool:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = p[i] != 0 ? 1 : 0 }
        case .f8E4M3:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = Float(f8E4M3Bits: p[i]) }
        case .f8E5M2:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = Float(f8E5M2Bits: p[i]) }
        }
    }
}
