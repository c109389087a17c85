import FinchCore
import FinchFormats
import FinchQuant

/// Tensors by their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`), as f32,
/// whatever file they come from.
public protocol WeightSource: Sendable {
    /// The file or directory the weights come from (for error messages).
    var path: String { get }
    /// Shape in PyTorch order (`[out, in]` for a linear weight), or nil when absent.
    func shape(of name: String) -> [Int]?
    /// The values, row-major in PyTorch order.
    func load(_ name: String) throws -> Buffer<Float>
    /// Per-frequency rotary divisors stored as a tensor (llama.cpp's `rope_freqs.weight`), if any.
    func ropeFrequencyFactors() throws -> [Float]?
    /// `name` as stored 4-bit (bitsandbytes' serialized layout), or nil when it is stored as plain values.
    func quantizedWeight(_ name: String) throws -> FourBitTensor?
}

extension WeightSource {
    public func ropeFrequencyFactors() throws -> [Float]? { nil }
    public func quantizedWeight(_ name: String) throws -> FourBitTensor? { nil }

    /// Loads `name`, checking its shape.
    func load(_ name: String, shape expected: [Int]) throws -> Buffer<Float> {
        guard let s = shape(of: name) else { throw ModelError.missingWeight(path: path, name: name) }
        guard s == expected else { throw ModelError.badWeightShape(path: path, name: name, expected: expected, actual: s) }
        return try load(name)
    }
}

/// Weights of a llama.cpp GGUF file, dequantized to f32 and mapped back to Hugging Face
/// names and layout (q/k rows un-permuted from llama.cpp's interleaved rotary order), exactly
/// as transformers does when it loads a GGUF.
public struct GGUFWeightSource: WeightSource {
    public let file: GGUFFile
    public let config: LlamaConfig
    public var path: String { file.path }

    public init(file: GGUFFile, config: LlamaConfig) {
        self.file = file
        self.config = config
    }

    /// The GGUF tensor name for a Hugging Face name, or nil when it has none.
    public static func ggufName(for hf: String) -> String? {
        switch hf {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = hf.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        let map = [
            "input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
        ]
        guard let g = map[rest] else { return nil }
        return "blk.\(layer).\(g)"
    }

    public func shape(of name: String) -> [Int]? {
        guard let g = Self.ggufName(for: name), let t = file.tensor(named: g) else { return nil }
        return t.dimensions.reversed()
    }

    public func ropeFrequencyFactors() throws -> [Float]? {
        guard let t = file.tensor(named: "rope_freqs.weight") else { return nil }
        return try file.dequantize(t)
    }

    public func load(_ name: String) throws -> Buffer<Float> {
        guard let g = Self.ggufName(for: name), let t = file.tensor(named: g) else {
            throw ModelError.missingWeight(path: path, name: name)
        }
        let out = Buffer<Float>(count: t.elementCount)
        try file.dequantize(t, into: out.buffer)
        let arch = file.metadata["general.architecture"]?.stringValue ?? "llama"
        if arch == "llama" || arch == "mistral" {
            if name.hasSuffix("self_attn.q_proj.weight") {
                return Self.unpermuteRotary(out, heads: config.numAttentionHeads, rowLength: t.dimensions[0])
            }
            if name.hasSuffix("self_attn.k_proj.weight") {
                return Self.unpermuteRotary(out, heads: config.numKeyValueHeads, rowLength: t.dimensions[0])
            }
        }
        return out
    }

    /// llama.cpp stores each head's q/k rows as interleaved pairs (2j, 2j+1); Hugging Face
    /// keeps halves (j, j + D/2). GGUF row h·D + 2j + t is HF row h·D + t·D/2 + j.
    static func unpermuteRotary(_ w: Buffer<Float>, heads: Int, rowLength: Int) -> Buffer<Float> {
        let rows = w.count / rowLength
        let d = rows / heads, half = d / 2
        let out = Buffer<Float>(count: w.count)
        for h in 0..<heads {
            for j in 0..<half {
                for t in 0..<2 {
                    let src = w.pointer + (h * d + 2 * j + t) * rowLength
                    let dst = out.pointer + (h * d + t * half + j) * rowLength
                    dst.update(from: src, count: rowLength)
                }
            }
        }
        return out
    }
}

/// Weights of a Hugging Face model directory (`model.safetensors` or sharded with an index).
public struct SafeTensorsWeightSource: WeightSource {
    public let collection: SafeTensorsCollection
    public let path: String

    public init(directory: String) throws {
        collection = try SafeTensorsCollection(directory: directory)
        path = directory
    }

    public func shape(of name: String) -> [Int]? { collection.info(name)?.shape }

    public func load(_ name: String) throws -> Buffer<Float> {
        Buffer(try collection.floats(name))
    }

    public func quantizedWeight(_ name: String) throws -> FourBitTensor? {
        try FourBitTensor.load(name, from: collection)
    }
}
