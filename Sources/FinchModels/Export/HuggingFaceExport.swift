import FinchCore
import FinchFormats
import FinchQuant
import FinchTokenizer
import Foundation


// What every family's Hugging Face export shares: the types, the tensor plan entries, the
// safetensors shards with their index, JSON files, and the directory that appears all at once.

/// Element type of the weights in an exported checkpoint (norms included, as transformers saves them).
public enum ExportDType: String, Sendable, CaseIterable {
    case f32, bf16, f16

    /// The name transformers uses in `config.json` (`torch_dtype` / `dtype`).
    public var torchName: String {
        switch self { case .f32: "float32"; case .bf16: "bfloat16"; case .f16: "float16" }
    }

    var safeTensorsDType: SafeTensorsDType {
        switch self { case .f32: .f32; case .bf16: .bf16; case .f16: .f16 }
    }
}

/// Errors raised while exporting a model; each says which path and what to do.
public enum ExportError: Error, CustomStringConvertible, Sendable {
    /// The output directory exists and holds files.
    case outputExists(path: String)
    /// The output path exists and is not a directory.
    case notADirectory(path: String)
    /// A file or directory could not be created, written or renamed.
    case io(path: String, reason: String)
    /// The model holds something a Hugging Face checkpoint cannot describe.
    case unsupported(path: String, reason: String)
    /// A weight cannot be represented in the export type.
    case outOfRange(path: String, tensor: String, value: Float, dtype: ExportDType)
    /// An argument is out of range.
    case badArgument(String)
    /// The model's architecture has no GGUF writer (see `GGUFExportable`).
    case noGGUFWriter(path: String, architecture: String)

    public var description: String {
        switch self {
        case .outputExists(let p):
            return "\(p): the output directory exists and is not empty; choose another directory or pass overwrite (--overwrite) to replace it"
        case .notADirectory(let p):
            return "\(p): exists and is not a directory; choose another output path"
        case .io(let p, let r): return "\(p): \(r)"
        case .unsupported(let p, let r): return "\(p): cannot export: \(r)"
        case .outOfRange(let p, let t, let v, let d):
            return "\(p): tensor '\(t)' holds \(v), which \(d.rawValue) cannot represent; export as bf16 or f32 instead"
        case .badArgument(let what): return "bad argument: \(what)"
        case .noGGUFWriter(let p, let arch):
            return "\(p): cannot export as GGUF: Finch has no GGUF writer for the \(arch) architecture (it writes llama, mistral, qwen2, qwen3, gemma3, gpt2 and t5); export it as a Hugging Face directory with finch merge"
        }
    }
}

/// What `saveHuggingFace` wrote.
public struct HuggingFaceExport: Sendable {
    /// The output directory.
    public let directory: String
    /// File names written into it, sorted.
    public let files: [String]
    /// Number of tensors written.
    public let tensorCount: Int
    /// Bytes of tensor data (the index's `total_size`).
    public let tensorBytes: Int
    /// Adapters whose effect is in the written weights: merged ones, and an active unmerged one
    /// folded in while writing.
    public let adapters: [String]
}

/// How `saveHuggingFace` writes (see there).
public struct HuggingFaceExportOptions: Sendable {
    public var dtype: ExportDType
    public var maxShardBytes: Int?
    public var overwrite: Bool
    public var dequantize: Bool
    public init(dtype: ExportDType = .f32, maxShardBytes: Int? = nil, overwrite: Bool = false, dequantize: Bool = false) {
        self.dtype = dtype; self.maxShardBytes = maxShardBytes; self.overwrite = overwrite; self.dequantize = dequantize
    }
}

/// One tensor to export: its name, shape and a producer of its f32 values (called once, when
/// written), or the 4-bit tensor written as is (with its layer's compute type).
struct ExportTensor {
    let name: String
    let shape: [Int]
    let values: () -> Buffer<Float>
    var quantized: (tensor: any StoredQuantizedMatrix, compute: WeightDType)? = nil
}

/// Writes a Hugging Face checkpoint's files.
enum HuggingFaceWriter {
    /// Writes `directory` atomically (a temporary sibling renamed into place): the weights of
    /// `plan` (sharded past `options.maxShardBytes`), `config.json`, `generation_config.json` and,
    /// with a tokenizer, `tokenizer.json` + `tokenizer_config.json`.
    static func writeDirectory(_ directory: String, plan: [ExportTensor], config: JSONValue, generationConfig: JSONValue,
                               tokenizer: Tokenizer?, options: HuggingFaceExportOptions,
                               adapters: [String]) throws -> HuggingFaceExport {
        if let m = options.maxShardBytes, m <= 0 { throw ExportError.badArgument("maxShardBytes must be positive (got \(m))") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw ExportError.notADirectory(path: directory) }
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            if !contents.isEmpty && !options.overwrite { throw ExportError.outputExists(path: directory) }
        }
        return try AtomicDirectory.write(to: directory) { tmp in
            let files = try writeWeights(plan, into: tmp, dtype: options.dtype, maxShardBytes: options.maxShardBytes)
            try writeJSON(config, to: tmp + "/config.json")
            try writeJSON(generationConfig, to: tmp + "/generation_config.json")
            var names = files.names + ["config.json", "generation_config.json"]
            if let tokenizer {
                try tokenizer.writeTokenizerJSON(to: tmp)
                names += ["tokenizer.json", "tokenizer_config.json"]
            }
            return HuggingFaceExport(directory: directory, files: names.sorted(), tensorCount: files.tensors,
                                     tensorBytes: files.bytes, adapters: adapters)
        }
    }

    /// Writes the safetensors file(s) (and the index when sharded) into `dir`.
    static func writeWeights(_ plan: [ExportTensor], into dir: String, dtype: ExportDType,
                             maxShardBytes: Int?) throws -> (names: [String], tensors: Int, bytes: Int) {
        let size = dtype.safeTensorsDType.byteSize
        var shards: [[ExportTensor]] = [[]]
        var shardBytes = 0, total = 0
        for t in plan {
            let bytes = t.quantized.map { q in
                q.tensor.safeTensorsEntries(name: t.name, dtype: dtype.torchName).reduce(0) { $0 + $1.bytes.count }
            } ?? t.shape.reduce(1, *) * size
            if let limit = maxShardBytes, !shards[shards.count - 1].isEmpty, shardBytes + bytes > limit {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(t)
            shardBytes += bytes
            total += bytes
        }
        let n = shards.count
        func shardName(_ k: Int) -> String {
            n == 1 ? "model.safetensors" : String(format: "model-%05d-of-%05d.safetensors", k + 1, n)
        }
        var weightMap: [(key: String, value: JSONValue)] = []
        for (k, shard) in shards.enumerated() {
            let path = dir + "/" + shardName(k)
            var entries: [SafeTensorsWriter.Entry] = []
            for t in shard {
                if let q = t.quantized {
                    entries += q.tensor.safeTensorsEntries(name: t.name, dtype: dtype.torchName)
                } else {
                    entries.append(try entry(t, dtype: dtype, path: path))
                }
            }
            try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: path)
            weightMap += entries.map { ($0.name, .string(shardName(k))) }
        }
        var names = (0..<n).map(shardName)
        if n > 1 {
            weightMap.sort { $0.key < $1.key }
            let index: JSONValue = .object([("metadata", .object([("total_size", .number(String(total)))])),
                                            ("weight_map", .object(weightMap))])
            try writeJSON(index, to: dir + "/model.safetensors.index.json")
            names.append("model.safetensors.index.json")
        }
        return (names, weightMap.count, total)
    }

    /// A safetensors entry holding `t`'s values rounded to `dtype`.
    static func entry(_ t: ExportTensor, dtype: ExportDType, path: String) throws -> SafeTensorsWriter.Entry {
        let v = t.values()
        precondition(v.count == t.shape.reduce(1, *), "\(t.name): \(v.count) values for shape \(t.shape)")
        switch dtype {
        case .f32:
            return .init(name: t.name, dtype: .f32, shape: t.shape,
                         bytes: [UInt8](UnsafeRawBufferPointer(start: v.pointer, count: v.byteCount)))
        case .bf16, .f16:
            var bits = [UInt16](repeating: 0, count: v.count)
            bits.withUnsafeMutableBufferPointer { b in
                if dtype == .bf16 { HalfConversion.floatToBF16(v.pointer, b.baseAddress!, count: v.count) }
                else { HalfConversion.floatToF16(v.pointer, b.baseAddress!, count: v.count) }
            }
            if dtype == .f16, let bad = (0..<v.count).first(where: { v[$0].isFinite && bits[$0] & 0x7fff == 0x7c00 }) {
                throw ExportError.outOfRange(path: path, tensor: t.name, value: v[bad], dtype: dtype)
            }
            return .init(name: t.name, dtype: dtype.safeTensorsDType, shape: t.shape,
                         bytes: bits.withUnsafeBytes { [UInt8]($0) })
        }
    }

    /// Writes a JSON document (2-space indent, trailing newline) and flushes it to disk.
    static func writeJSON(_ value: JSONValue, to path: String) throws {
        let data = Data((value.serialized(indent: 2) + "\n").utf8)
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw ExportError.io(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}
