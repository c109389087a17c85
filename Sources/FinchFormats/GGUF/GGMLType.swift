/// ggml tensor element types, with the numbers GGUF files store (`ggml_type` in ggml.h).
///
/// Numbers ggml has retired (4, 5, 31–33, 36–38) are not cases: a file that uses them is
/// rejected with ``FormatError/unknownTensorType(path:tensor:type:)``.
public enum GGMLType: UInt32, Sendable, CaseIterable, Hashable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case q8_K = 15
    case iq2_xxs = 16
    case iq2_xs = 17
    case iq3_xxs = 18
    case iq1_s = 19
    case iq4_nl = 20
    case iq3_s = 21
    case iq2_s = 22
    case iq4_xs = 23
    case i8 = 24
    case i16 = 25
    case i32 = 26
    case i64 = 27
    case f64 = 28
    case iq1_m = 29
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35
    case mxfp4 = 39
    case nvfp4 = 40
    case q1_0 = 41

    /// Elements per block (1 for plain types, 32 for the legacy quants, 256 for K-quants).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
        case .nvfp4: return 64
        case .q1_0: return 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s,
             .iq3_s, .iq2_s, .iq4_xs, .iq1_m, .tq1_0, .tq2_0:
            return 256
        }
    }

    /// Bytes per block (`sizeof(block_*)` in ggml).
    public var typeSize: Int {
        let qk = 256
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .f64: return 8
        case .i8: return 1
        case .i16: return 2
        case .i32: return 4
        case .i64: return 8
        case .q4_0: return 2 + 16
        case .q4_1: return 2 + 2 + 16
        case .q5_0: return 2 + 4 + 16
        case .q5_1: return 2 + 2 + 4 + 16
        case .q8_0: return 2 + 32
        case .q8_1: return 2 + 2 + 32  // ggml's block_q8_1 (gguf-py's table says 40, which is stale)
        case .q2_K: return 2 + 2 + qk / 16 + qk / 4
        case .q3_K: return 2 + qk / 4 + qk / 8 + 12
        case .q4_K: return 2 + 2 + qk / 2 + 12
        case .q5_K: return 2 + 2 + qk / 2 + qk / 8 + 12
        case .q6_K: return 2 + qk / 2 + qk / 4 + qk / 16
        case .q8_K: return 4 + qk + qk / 8
        case .iq2_xxs: return 2 + qk / 4
        case .iq2_xs: return 2 + qk / 4 + qk / 32
        case .iq3_xxs: return 2 + qk / 4 + qk / 8
        case .iq1_s: return 2 + qk / 8 + qk / 16
        case .iq4_nl: return 2 + 16
        case .iq3_s: return 2 + qk / 4 + qk / 8 + qk / 32 + 4
        case .iq2_s: return 2 + qk / 4 + qk / 16
        case .iq4_xs: return 2 + 2 + qk / 2 + qk / 64
        case .iq1_m: return qk / 8 + qk / 16 + qk / 32
        case .tq1_0: return 2 + 4 * 13
        case .tq2_0: return 2 + 64
        case .mxfp4: return 1 + 16
        case .nvfp4: return 4 + 32
        case .q1_0: return 2 + 16
        }
    }

    /// The name ggml and llama.cpp print, e.g. `Q4_K`, `F16`.
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_xxs: return "IQ2_XXS"
        case .iq2_xs: return "IQ2_XS"
        case .iq3_xxs: return "IQ3_XXS"
        case .iq1_s: return "IQ1_S"
        case .iq4_nl: return "IQ4_NL"
        case .iq3_s: return "IQ3_S"
        case .iq2_s: return "IQ2_S"
        case .iq4_xs: return "IQ4_XS"
        case .iq1_m: return "IQ1_M"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        case .nvfp4: return "NVFP4"
        case .q1_0: return "Q1_0"
        }
    }

    /// True for block-quantized types (everything but the plain float and integer types).
    public var isQuantized: Bool { blockSize > 1 }

    /// True if ``GGUFFile/dequantize(_:)`` can convert this type to Float.
    public var canDequantize: Bool { GGMLDequantizer.kernel(for: self) != nil }
}

extension GGMLType: CustomStringConvertible {
    /// The ggml name (``name``), e.g. `Q4_K`.
    public var description: String { name }
}
