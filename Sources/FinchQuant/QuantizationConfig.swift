import FinchCore
import FinchFormats

/// How a model's frozen linear layers are quantized (bitsandbytes' `BitsAndBytesConfig` with
/// `load_in_4bit`): type, block size, double quantization, and the precision products run in.
public struct QuantizationConfig: Sendable, Hashable, Codable {
    public var type: FourBitType
    public var blocksize: Int
    public var doubleQuant: Bool
    /// `bnb_4bit_compute_dtype`: f32, or bf16 (bf16 products, f32 accumulation).
    public var computeDType: WeightDType

    public init(type: FourBitType = .nf4, blocksize: Int = 64, doubleQuant: Bool = false, computeDType: WeightDType = .f32) {
        self.type = type; self.blocksize = blocksize; self.doubleQuant = doubleQuant; self.computeDType = computeDType
    }

    /// Throws for a block size bitsandbytes does not support.
    public func validate() throws {
        guard FourBitTensor.blocksizes.contains(blocksize) else { throw QuantError.invalidBlocksize(blocksize) }
    }

    /// A frozen linear weight `[out, in]` quantized from f32 values.
    public func linear(outFeatures: Int, inFeatures: Int, values: Buffer<Float>) throws -> LinearWeight {
        let q = try FourBitTensor.quantize(UnsafeBufferPointer(values.buffer), shape: [outFeatures, inFeatures],
                                           type: type, blocksize: blocksize, doubleQuant: doubleQuant)
        return LinearWeight(outFeatures: outFeatures, inFeatures: inFeatures, storage: .quantized(q, compute: computeDType))
    }

    public var summary: String {
        "\(type.rawValue), blocksize \(blocksize)\(doubleQuant ? ", double quantization" : ""), compute \(computeDType.rawValue)"
    }
}

// MARK: config.json

extension QuantizationConfig {
    /// The `quantization_config` object transformers writes into `config.json` for a
    /// `BitsAndBytesConfig(load_in_4bit=True, …)` model (keys sorted, as transformers writes them).
    public var huggingFaceJSON: JSONValue {
        let compute: String = computeDType == .bf16 ? "bfloat16" : "float32"
        var m: [(key: String, value: JSONValue)] = [
            ("_load_in_4bit", .bool(true)), ("_load_in_8bit", .bool(false)),
            ("bnb_4bit_compute_dtype", .string(compute)), ("bnb_4bit_quant_storage", .string("uint8")),
            ("bnb_4bit_quant_type", .string(type.rawValue)), ("bnb_4bit_use_double_quant", .bool(doubleQuant)),
            ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
            ("llm_int8_skip_modules", .null), ("llm_int8_threshold", .number("6.0")),
            ("load_in_4bit", .bool(true)), ("load_in_8bit", .bool(false)), ("quant_method", .string("bitsandbytes")),
        ]
        // bitsandbytes has no blocksize option (always 64); Finch records another one under its own key.
        if blocksize != 64 { m.append(("finch_4bit_blocksize", .number(String(blocksize)))) }
        m.sort { $0.key < $1.key }
        return .object(m)
    }

    /// Reads a `config.json`'s `quantization_config`: nil when there is none; an error naming
    /// `path` when it describes something Finch cannot load (8-bit, another method).
    public init?(huggingFace config: JSONValue, path: String) throws {
        guard let q = config["quantization_config"], !q.isNull else { return nil }
        func bad(_ why: String) -> QuantError { .malformed(tensor: "\(path): quantization_config", what: why) }
        let method = q["quant_method"]?.stringValue ?? "bitsandbytes"
        guard method == "bitsandbytes" else { throw bad("quant_method '\(method)' is not supported; Finch reads bitsandbytes 4-bit checkpoints") }
        let four = q["load_in_4bit"]?.boolValue ?? q["_load_in_4bit"]?.boolValue ?? false
        guard four else { throw bad("only load_in_4bit checkpoints are supported (this one is 8-bit or not quantized)") }
        let t = q["bnb_4bit_quant_type"]?.stringValue ?? "fp4"   // bitsandbytes' default
        guard let type = FourBitType(rawValue: t) else { throw bad("bnb_4bit_quant_type '\(t)' is not nf4 or fp4") }
        let compute: WeightDType
        switch q["bnb_4bit_compute_dtype"]?.stringValue ?? "float32" {
        case "bfloat16": compute = .bf16
        default: compute = .f32   // float32, and float16 (Finch computes f16 requests in f32)
        }
        self.init(type: type, blocksize: q["finch_4bit_blocksize"]?.intValue ?? 64,
                  doubleQuant: q["bnb_4bit_use_double_quant"]?.boolValue ?? false, computeDType: compute)
        try validate()
    }
}
