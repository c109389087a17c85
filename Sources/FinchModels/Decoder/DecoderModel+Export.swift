import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import FinchTokenizer
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Dimension letters: O out features, I in features, R rank.

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

extension DecoderModel {
    /// Writes the model as a Hugging Face directory of its family (`LlamaForCausalLM`, …) that transformers (and
    /// `LanguageModel.load`) can load: `config.json`, `generation_config.json`, the weights as
    /// `model.safetensors` (or `model-0000k-of-0000n.safetensors` shards plus
    /// `model.safetensors.index.json` when they exceed `maxShardBytes`), and, with a tokenizer,
    /// `tokenizer.json` + `tokenizer_config.json` (which carries the chat template).
    ///
    /// The weights written are what `forward` computes with: an adapter merged with
    /// `mergeActiveAdapter()` is already in the base weights; an **active, unmerged** adapter is
    /// folded into a copy of each weight as it is written (`W + scaling·B·A`, DoRA rescaled), so
    /// the model itself is left unchanged; a disabled adapter (`setActiveAdapter(nil)`) is left out.
    /// `q_proj` / `k_proj` are kept in Hugging Face row order (GGUF loading already un-permutes them).
    ///
    /// Linears held in 4 bits (QLoRA, `finch quantize`) are written in bitsandbytes' serialized
    /// layout (see `FourBitTensor.safeTensorsEntries`) with a `quantization_config` in
    /// `config.json`, as transformers saves a `load_in_4bit` model, unless `dequantize` is true
    /// (then they are written as `dtype` values). An active adapter that is not merged cannot be
    /// folded into 4-bit weights without requantizing: merge it first (`mergeActiveAdapter()`,
    /// which reports the rounding) or export dequantized.
    /// `lm_head.weight` is written only when the head is not tied to the embedding.
    ///
    /// The directory appears atomically: everything is written into a temporary sibling directory,
    /// flushed, then renamed into place. An existing non-empty `directory` is an error unless
    /// `overwrite` is true (then it is replaced; an empty one is always replaced).
    ///
    /// - Throws: ``ExportError``, and ``FinchFormats/FormatError`` / ``FinchTokenizer/TokenizerError``
    ///   from the writers.
    public func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, options: HuggingFaceExportOptions) throws
        -> HuggingFaceExport {
        let dtype = options.dtype, maxShardBytes = options.maxShardBytes
        if let m = maxShardBytes, m <= 0 { throw ExportError.badArgument("maxShardBytes must be positive (got \(m))") }
        for (described, used) in zip(config.decoderSpec.ropes, spec.ropes) {
            guard described.invFreq.count == used.invFreq.count,
                  zip(described.invFreq, used.invFreq).allSatisfy({ abs($0 - $1) <= 1e-6 * max(abs($0), abs($1)) }) else {
                throw ExportError.unsupported(path: directory, reason: "the rotary frequencies come from a rope_freqs tensor "
                    + "(llama.cpp) that config.json cannot describe; export from the Hugging Face checkpoint instead")
            }
        }
        let plan = try exportPlan(keepQuantized: !options.dequantize, path: directory)
        var configJSON = config.huggingFaceConfigJSON(torchDType: dtype.torchName, tieWordEmbeddings: lmHead === embedding)
        if let q = plan.lazy.compactMap(\.quantized).first {
            var qc = q.tensor.storedConfig
            qc.computeDType = q.compute
            configJSON = configJSON.patched(set: [("quantization_config", qc.huggingFaceJSON)])
        }

        return try AtomicDirectory.write(to: directory, overwrite: options.overwrite) { tmp in
            var files = try writeWeights(plan, into: tmp, dtype: dtype, maxShardBytes: maxShardBytes)
            try Self.writeJSON(configJSON, to: tmp + "/config.json")
            try Self.writeJSON(config.generationConfigJSON(), to: tmp + "/generation_config.json")
            files.names += ["config.json", "generation_config.json"]
            if let tokenizer {
                try tokenizer.writeTokenizerJSON(to: tmp)
                files.names += ["tokenizer.json", "tokenizer_config.json"]
            }
            return HuggingFaceExport(directory: directory, files: files.names.sorted(), tensorCount: files.tensors,
                                     tensorBytes: files.bytes, adapters: exportedAdapters)
        }
    }

    /// Hugging Face names and shapes of the weights an export writes, in checkpoint order (as
    /// unquantized tensors; a 4-bit layer's weight is written as its bitsandbytes parts).
    public var huggingFaceTensorShapes: [(name: String, shape: [Int])] {
        ((try? exportPlan(keepQuantized: false, path: "")) ?? []).map { ($0.name, $0.shape) }
    }

    /// One tensor to export: its name, shape and a producer of its f32 values (called once, when
    /// written), or the 4-bit tensor written as is (with its layer's compute type).
    struct ExportTensor {
        let name: String
        let shape: [Int]
        let values: () -> Buffer<Float>
        var quantized: (tensor: any StoredQuantizedMatrix, compute: WeightDType)? = nil
    }

    /// `linearsAsStored`: Conv1D families' linears [in, out] as their checkpoints store them;
    /// false gives every linear [out, in] (GGUF).
    func exportPlan(keepQuantized: Bool, path: String, linearsAsStored: Bool = true) throws -> [ExportTensor] {
        let c = spec.hiddenSize
        var plan = [ExportTensor(name: "\(names.embedding).weight", shape: [embedding.outFeatures, embedding.inFeatures],
                                 values: { [embedding] in embedding.floatValues() })]
        if let pe = positionEmbedding, let p = names.positions {
            plan.append(ExportTensor(name: "\(p).weight", shape: [pe.outFeatures, pe.inFeatures], values: { pe.floatValues() }))
        }
        for (i, layer) in layers.enumerated() {
            // Norms and linears in the order transformers writes a block: attention norm, q/k norms,
            // projections (weight, bias), MLP norm.
            func norm(_ n: DecoderNorm) {
                let w = layer.storedNorms[n]!
                plan.append(ExportTensor(name: "\(names.module(n, layer: i)).weight", shape: [w.count], values: { w }))
                if let b = layer.normBiases[n] {
                    plan.append(ExportTensor(name: "\(names.module(n, layer: i)).bias", shape: [b.count], values: { b }))
                }
            }
            for n in spec.norms where n != .mlp { norm(n) }
            for lin in spec.linears {
                let l = layer[lin]
                let module = names.module(lin, layer: i)
                // Conv1D weights are written back [in, out].
                var t = names.linearsTransposed && linearsAsStored
                    ? ExportTensor(name: module + ".weight", shape: [l.inFeatures, l.outFeatures],
                                   values: { transposed(Self.effectiveWeight(l), rows: l.outFeatures, columns: l.inFeatures) })
                    : ExportTensor(name: module + ".weight", shape: [l.outFeatures, l.inFeatures],
                                   values: { Self.effectiveWeight(l) })
                if keepQuantized, case .quantized(let q, let compute) = baseWeight(l).storage, let four = q as? any StoredQuantizedMatrix {
                    if names.linearsTransposed {
                        throw ExportError.unsupported(path: path, reason: "quantized Conv1D layers (\(spec.family)) cannot be written in "
                            + "bitsandbytes' layout yet; export dequantized (finch merge without --keep-4bit)")
                    }
                    if let w = l as? LoRALinear, let a = w.active, w.adapters[a] != nil, w.merged?.name != a {
                        throw ExportError.unsupported(path: path, reason: "adapter '\(a)' is active but not merged into the quantized "
                            + "weights of \(t.name): merge it first (it is requantized and the rounding reported) or export dequantized")
                    }
                    t.quantized = (four, compute)
                }
                plan.append(t)
                if let b = layer.biases[lin] {
                    plan.append(ExportTensor(name: module + ".bias", shape: [b.count], values: { b }))
                }
            }
            norm(.mlp)
        }
        plan.append(ExportTensor(name: "\(names.finalNorm).weight", shape: [c], values: { [finalNormStored] in finalNormStored }))
        if let b = finalNormBias {
            plan.append(ExportTensor(name: "\(names.finalNorm).bias", shape: [c], values: { b }))
        }
        if lmHead !== embedding {
            plan.append(ExportTensor(name: "\(names.head).weight", shape: [lmHead.outFeatures, lmHead.inFeatures],
                                     values: { [lmHead] in lmHead.floatValues() }))
        }
        return plan
    }

    /// Names of the adapters whose effect an export writes (merged, or active and folded in).
    var exportedAdapters: [String] {
        var names = Set<String>()
        forEachLoRALinear { w in
            if let m = w.merged { names.insert(m.name) }
            if let a = w.active, w.adapters[a] != nil { names.insert(a) }
        }
        return names.sorted()
    }

    /// W [O, I] as `forward` applies it: the base weight, plus the active adapter when it is not merged
    /// (folded into a copy; the layer is not changed).
    public static func effectiveWeight(_ layer: any LinearLayer) -> Buffer<Float> {
        guard let w = layer as? LoRALinear else { return baseWeight(layer).floatValues() }
        let base = w.base.floatValues()
        guard let name = w.active, w.merged?.name != name, let lora = w.adapters[name] else { return base }
        let o = w.outFeatures, i = w.inFeatures, r = lora.rank
        let out = Buffer<Float>(count: o * i)
        out.pointer.update(from: base.pointer, count: o * i)
        Parallel.forEach(o, costPerItem: i * (r + 2)) { row in
            let dst = out.pointer + row * i
            for k in 0..<r {
                let coef = lora.scaling * lora.b[row * r + k]
                let ak = lora.a.pointer + k * i
                for col in 0..<i { dst[col] += coef * ak[col] }
            }
        }
        if let m = lora.magnitude {
            // DoRA: m / ‖W + scaling·B·A‖ per output row (norm over the inputs), as LoRALinear.merge.
            Parallel.forEach(o, costPerItem: i * 3) { row in
                let dst = out.pointer + row * i
                var ss = 0.0
                for col in 0..<i { ss += Double(dst[col]) * Double(dst[col]) }
                let s = m[row] / Float(ss.squareRoot())
                for col in 0..<i { dst[col] *= s }
            }
        }
        return out
    }

    /// Writes the safetensors file(s) (and the index when sharded) into `dir`.
    private func writeWeights(_ plan: [ExportTensor], into dir: String, dtype: ExportDType,
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
                    entries.append(try Self.entry(t, dtype: dtype, path: path))
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
            try Self.writeJSON(index, to: dir + "/model.safetensors.index.json")
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

/// rename(2).
private func posixRename(_ from: String, _ to: String) -> Int32 {
    #if canImport(Glibc)
    return Glibc.rename(from, to)
    #else
    return Darwin.rename(from, to)
    #endif
}

/// A directory made to appear all at once: filled as a temporary sibling, flushed, then renamed.
enum AtomicDirectory {
    static func write<T>(to directory: String, overwrite: Bool, _ body: (String) throws -> T) throws -> T {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        let target = url.path, parent = url.deletingLastPathComponent().path, base = url.lastPathComponent
        var isDir: ObjCBool = false
        let exists = fm.fileExists(atPath: target, isDirectory: &isDir)
        if exists {
            guard isDir.boolValue else { throw ExportError.notADirectory(path: directory) }
            let contents = (try? fm.contentsOfDirectory(atPath: target)) ?? []
            if !contents.isEmpty && !overwrite { throw ExportError.outputExists(path: directory) }
        }
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw ExportError.io(path: parent, reason: "cannot create the parent directory: \(error.localizedDescription)")
        }
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let tmp = parent + "/.\(base).tmp-\(tag)"
        do { try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false) } catch {
            throw ExportError.io(path: tmp, reason: "cannot create a temporary directory: \(error.localizedDescription)")
        }
        var done = false
        defer { if !done { try? fm.removeItem(atPath: tmp) } }
        let result = try body(tmp)
        for f in (try? fm.contentsOfDirectory(atPath: tmp)) ?? [] { try sync(tmp + "/" + f) }
        try sync(tmp)
        if exists {
            // An empty directory is replaced by rename(2) itself; a full one is moved aside first.
            let contents = (try? fm.contentsOfDirectory(atPath: target)) ?? []
            if contents.isEmpty {
                try rename(tmp, target)
            } else {
                let old = parent + "/.\(base).old-\(tag)"
                try rename(target, old)
                do { try rename(tmp, target) } catch {
                    _ = posixRename(old, target)
                    throw error
                }
                try? fm.removeItem(atPath: old)
            }
        } else {
            try rename(tmp, target)
        }
        done = true
        try? sync(parent)
        return result
    }

    private static func rename(_ from: String, _ to: String) throws {
        if posixRename(from, to) != 0 {
            throw ExportError.io(path: to, reason: "cannot rename \(from) into place: \(String(cString: strerror(errno)))")
        }
    }

    /// fsync(2) of a file or directory.
    private static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ExportError.io(path: path, reason: "cannot open to flush: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw ExportError.io(path: path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
    }
}
