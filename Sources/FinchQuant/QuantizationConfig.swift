import FinchCore
import FinchFormats

/// How frozen weights are quantized, as the command line names it: bitsandbytes' 4-bit types
/// (QLoRA) or LLM.int8.
public enum QuantMethod: String, Sendable, Hashable, Codable, CaseIterable {
    case nf4, fp4, int8
}

/// How a model's frozen linear layers are quantized (bitsandbytes' `BitsAndBytesConfig`): with
/// `load_in_4bit`, type, block size and double quantization; with `load_in_8bit` (LLM.int8,
/// `int8Threshold` set), the outlier threshold; and the precision products run in.
public struct QuantizationConfig: Sendable, Hashable, Codable {
    public var type: FourBitType
    public var blocksize: Int
    public var doubleQuant: Bool
    /// `bnb_4bit_compute_dtype`: f32, or bf16 (bf16 products, f32 accumulation).
    public var computeDType: WeightDType
    /// LLM.int8 (`load_in_8bit`) instead of 4 bits, with this `llm_int8_threshold` (0: no outliers);
    /// the 4-bit settings are then unused.
    public var int8Threshold: Float? = nil

    public init(type: FourBitType = .nf4, blocksize: Int = 64, doubleQuant: Bool = false, computeDType: WeightDType = .f32) {
        self.type = type; self.blocksize = blocksize; self.doubleQuant = doubleQuant; self.computeDType = computeDType
    }

    /// LLM.int8 with `threshold` (transformers' default 6.0).
    public static func int8(threshold: Float = 6, computeDType: WeightDType = .f32) -> QuantizationConfig {
        var q = QuantizationConfig(computeDType: computeDType)
        q.int8Threshold = threshold
        return q
    }

    /// The settings `method` names (4-bit settings from the arguments, LLM.int8 with `int8Threshold`).
    public init(method: QuantMethod, blocksize: Int = 64, doubleQuant: Bool = false, computeDType: WeightDType = .f32,
                int8Threshold: Float = 6) {
        switch method {
        case .nf4, .fp4:
            self.init(type: method == .nf4 ? .nf4 : .fp4, blocksize: blocksize, doubleQuant: doubleQuant, computeDType: computeDType)
        case .int8:
            self = .int8(threshold: int8Threshold, computeDType: computeDType)
        }
    }

    public var isInt8: Bool { int8Threshold != nil }

    /// nf4, fp4 or int8.
    public var method: QuantMethod { isInt8 ? .int8 : type == .nf4 ? .nf4 : .fp4 }

    /// Throws for a block size bitsandbytes does not support, or a negative threshold.
    public func validate() throws {
        if let t = int8Threshold {
            guard t >= 0, t.isFinite else { throw QuantError.malformed(tensor: "llm_int8_threshold", what: "must be ≥ 0 (got \(t))") }
            return
        }
        guard FourBitTensor.blocksizes.contains(blocksize) else { throw QuantError.invalidBlocksize(blocksize) }
    }

    /// A frozen linear weight `[out, in]` quantized from f32 values.
    public func linear(outFeatures: Int, inFeatures: Int, values: Buffer<Float>) throws -> LinearWeight {
        let q: any QuantizedMatrix
        if let t = int8Threshold {
            q = Int8Tensor.quantize(UnsafeBufferPointer(values.buffer), rows: outFeatures, columns: inFeatures, threshold: t)
        } else {
            q = try FourBitTensor.quantize(UnsafeBufferPointer(values.buffer), shape: [outFeatures, inFeatures],
                                           type: type, blocksize: blocksize, doubleQuant: doubleQuant)
        }
        return LinearWeight(outFeatures: outFeatures, inFeatures: inFeatures, storage: .quantized(q, compute: computeDType))
    }

    public var summary: String {
        if let t = int8Threshold { return "LLM.int8, outlier threshold \(t), compute \(computeDType.rawValue)" }
        return "\(type.rawValue), blocksize \(blocksize)\(doubleQuant ? ", double quantization" : ""), compute \(computeDType.rawValue)"
    }

    /// Whether a weight stored with settings `stored` serves a request for these settings (the
    /// compute type and the int8 threshold apply at run time, so they may differ).
    public func accepts(stored: QuantizationConfig) -> Bool {
        if isInt8 || stored.isInt8 { return isInt8 && stored.isInt8 }
        return type == stored.type && blocksize == stored.blocksize && doubleQuant == stored.doubleQuant
    }
}

/// A quantized weight a checkpoint stores in bitsandbytes' serialized layout (4-bit or int8).
public protocol StoredQuantizedMatrix: QuantizedMatrix {
    /// [out, in].
    var shape: [Int] { get }
    /// The settings it was quantized with (compute type f32, threshold 6 for int8: run-time settings).
    var storedConfig: QuantizationConfig { get }
    /// Its safetensors entries when stored as `name`; `dtype` is the torch dtype the weight dequantizes to.
    func safeTensorsEntries(name: String, dtype: String) -> [SafeTensorsWriter.Entry]
    /// The names of those entries (what a checkpoint holding it as `name` holds for it).
    func storedNames(name: String) -> [String]
}

extension FourBitTensor: StoredQuantizedMatrix {
    public var storedConfig: QuantizationConfig { QuantizationConfig(type: type, blocksize: blocksize, doubleQuant: isDoubleQuantized) }
    public func storedNames(name: String) -> [String] {
        [name, name + ".quant_map", name + ".absmax"] + (isDoubleQuantized ? [name + ".nested_absmax", name + ".nested_quant_map"] : [])
            + [name + ".quant_state.bitsandbytes__" + type.rawValue]
    }
}

extension Int8Tensor: StoredQuantizedMatrix {
    public var storedConfig: QuantizationConfig { .int8(threshold: threshold) }
    public func safeTensorsEntries(name: String, dtype: String) -> [SafeTensorsWriter.Entry] { safeTensorsEntries(name: name) }
    public func storedNames(name: String) -> [String] { [name] + Self.companions(of: name) }
}

// MARK: config.json

extension QuantizationConfig {
    /// The `quantization_config` object transformers writes into `config.json` for a
    /// `BitsAndBytesConfig(load_in_4bit=True, …)` model (keys sorted, as transformers writes them).
    public var huggingFaceJSON: JSONValue {
        let compute: String = computeDType == .bf16 ? "bfloat16" : "float32"
        if let t = int8Threshold {
            // What transformers writes for BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=t).
            return .object([
                ("_load_in_4bit", .bool(false)), ("_load_in_8bit", .bool(true)),
                ("bnb_4bit_compute_dtype", .string("float32")), ("bnb_4bit_quant_storage", .string("uint8")),
                ("bnb_4bit_quant_type", .string("fp4")), ("bnb_4bit_use_double_quant", .bool(false)),
                ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
                ("llm_int8_skip_modules", .null), ("llm_int8_threshold", .number(String(Double(t)))),
                ("load_in_4bit", .bool(false)), ("load_in_8bit", .bool(true)), ("quant_method", .string("bitsandbytes")),
            ])
        }
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
        let eight = q["load_in_8bit"]?.boolValue ?? q["_load_in_8bit"]?.boolValue ?? false
        if eight && !four {
            if q["llm_int8_has_fp16_weight"]?.boolValue == true {
                throw bad("llm_int8_has_fp16_weight = true keeps 16-bit weights beside the int8 ones (for full fine-tuning); Finch reads frozen int8 bases (false)")
            }
            let t = q["llm_int8_threshold"]?.doubleValue ?? 6
            self = .int8(threshold: Float(t))
            try validate()
            return
        }
        guard four else { throw bad("neither load_in_4bit nor load_in_8bit is set; Finch reads bitsandbytes 4-bit and 8-bit checkpoints") }
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
