import FinchCore
import FinchFormats
import FinchQuant

/// Tensors by their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`), as f32,
/// whatever file they come from.
public protocol WeightSource: Sendable {
    /// The file or directory the weights come from (for error messages).
    var path: String { get }
    /// Every tensor the source holds, named as `load` takes them (a tensor with no Hugging Face
    /// name, in a GGUF, keeps its own), so that loading can refuse what a model does not use.
    var tensorNames: [String] { get }
    /// Shape in PyTorch order (`[out, in]` for a linear weight), or nil when absent.
    func shape(of name: String) -> [Int]?
    /// The values, row-major in PyTorch order.
    func load(_ name: String) throws -> Buffer<Float>
    /// The values `elements` of `name`, row-major in PyTorch order (a slice of a larger tensor).
    func load(_ name: String, elements: Range<Int>) throws -> Buffer<Float>
    /// Per-frequency rotary divisors stored as a tensor (llama.cpp's `rope_freqs.weight`), if any.
    func ropeFrequencyFactors() throws -> [Float]?
    /// `name` as stored 4-bit or int8 (bitsandbytes' serialized layouts), or nil when it is stored as plain values.
    func quantizedWeight(_ name: String) throws -> (any StoredQuantizedMatrix)?
    /// `name` kept in the quantized blocks a GGUF stores it in (a linear weight [out, in]), or nil
    /// when the source does not keep blocks or stores it otherwise.
    func blockWeight(_ name: String) throws -> GGUFBlockMatrix?
}

extension WeightSource {
    public func ropeFrequencyFactors() throws -> [Float]? { nil }
    public func quantizedWeight(_ name: String) throws -> (any StoredQuantizedMatrix)? { nil }
    public func blockWeight(_ name: String) throws -> GGUFBlockMatrix? { nil }
    public func load(_ name: String, elements: Range<Int>) throws -> Buffer<Float> {
        Buffer(Array(try load(name).array[elements]))
    }

    /// Loads `name`, checking its shape.
    func load(_ name: String, shape expected: [Int]) throws -> Buffer<Float> {
        guard let s = shape(of: name) else { throw ModelError.missingWeight(path: path, name: name) }
        guard s == expected else { throw ModelError.badWeightShape(path: path, name: name, expected: expected, actual: s) }
        return try load(name)
    }
}

/// A model's view of a weight source while it loads: names are scoped, never concatenated by
/// hand (`weights.scoped("model.layers").scoped(3).scoped("self_attn.q_proj")`), and every
/// tensor taken is remembered, so that what is left over at the end is an error (`finish`).
public struct WeightScope {
    final class Ledger {
        let source: WeightSource
        var used = Set<String>()
        init(source: WeightSource) { self.source = source }
    }

    let ledger: Ledger
    /// The prefix of this scope (`model.layers.3.self_attn.q_proj`), empty at the root.
    public let prefix: String

    public init(_ source: WeightSource) { ledger = Ledger(source: source); prefix = "" }
    private init(ledger: Ledger, prefix: String) { self.ledger = ledger; self.prefix = prefix }

    public var source: WeightSource { ledger.source }

    /// The scope of a submodule.
    public func scoped(_ name: String) -> WeightScope {
        WeightScope(ledger: ledger, prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
    }

    public func scoped(_ index: Int) -> WeightScope { scoped(String(index)) }

    /// The full name of a tensor of this scope.
    public func name(_ tensor: String) -> String { prefix.isEmpty ? tensor : "\(prefix).\(tensor)" }

    /// Whether the source holds this scope's `tensor`.
    public func has(_ tensor: String) -> Bool { source.shape(of: name(tensor)) != nil }

    /// This scope's `tensor`, checked to have `shape`.
    public func tensor(_ tensor: String, shape: [Int]) throws -> Buffer<Float> {
        let n = name(tensor)
        let values = try source.load(n, shape: shape)
        ledger.used.insert(n)
        return values
    }

    /// This scope's `tensor` when the source stores it in 4 bits or int8 (all its parts are taken).
    public func quantized(_ tensor: String) throws -> (any StoredQuantizedMatrix)? {
        let n = name(tensor)
        guard let q = try source.quantizedWeight(n) else { return nil }
        ledger.used.formUnion(q.storedNames(name: n))
        return q
    }

    /// This scope's `tensor` kept in a GGUF's quantized blocks, checked to be `shape` [out, in],
    /// or nil (see `WeightSource.blockWeight`).
    public func blocks(_ tensor: String, shape: [Int]) throws -> GGUFBlockMatrix? {
        let n = name(tensor)
        guard let m = try source.blockWeight(n) else { return nil }
        guard [m.rows, m.columns] == shape else {
            throw ModelError.badWeightShape(path: source.path, name: n, expected: shape, actual: [m.rows, m.columns])
        }
        ledger.used.insert(n)
        return m
    }

    /// Marks a tensor as used by something other than `tensor(_:shape:)` (e.g. rotary factors).
    public func take(_ fullName: String) { ledger.used.insert(fullName) }

    /// Throws when the source holds tensors nothing took, except those in `ignored`
    /// (exact names) — a checkpoint of another architecture, or one with parts Finch does not
    /// implement, would otherwise load and compute a wrong answer.
    public func finish(ignoring ignored: Set<String> = []) throws {
        let left = source.tensorNames.filter { !ledger.used.contains($0) && !ignored.contains($0) }.sorted()
        if !left.isEmpty { throw ModelError.unusedWeights(path: source.path, names: left) }
    }
}

/// Weights of a llama.cpp GGUF file, dequantized to f32 and mapped back to Hugging Face
/// names and layout (q/k rows un-permuted from llama.cpp's interleaved rotary order where the
/// family's converter permuted them), exactly as transformers does when it loads a GGUF. With
/// `keepsBlocks`, linear weights of llama.cpp's quantized types are given as they are stored
/// (`blockWeight`: mapped blocks, rows put back in the model's order as they are expanded).
public struct GGUFWeightSource: WeightSource {
    public let file: GGUFFile
    /// Whether `blockWeight` gives quantized linear weights as blocks.
    public var keepsBlocks = false
    /// Hugging Face name → GGUF name.
    let ggufName: [String: String]
    /// Hugging Face names of the q / k weights and biases llama.cpp stored with interleaved
    /// rotary rows → their head count (empty when the family's converter does not permute).
    let permutedHeads: [String: Int]
    /// Subtracted from norm weights (see `DecoderNames.ggufNormShift`).
    let normShift: Float
    /// Hugging Face names of Conv1D weights (GPT-2), which a GGUF stores [out, in] like any
    /// linear and the checkpoint [in, out]: given back transposed.
    let conv1D: Set<String>
    /// Each expert's weight (Hugging Face name) as its slice of llama.cpp's 3-D expert tensor
    /// (`ffn_gate_exps` …: the experts' [out, in] matrices one after another).
    let expertSlices: [String: GGUFTensorInfo]
    public var path: String { file.path }

    /// The file's tensor holding `name`: its own, or its expert's slice of a 3-D expert tensor.
    func tensor(for name: String) -> GGUFTensorInfo? {
        if let t = expertSlices[name] { return t }
        guard let g = ggufName[name] else { return nil }
        return file.tensor(named: g)
    }

    /// A source reading `file` under the names `names` declares for a model with `spec`.
    public init(file: GGUFFile, names: DecoderNames, spec: DecoderSpec) {
        self.file = file
        let all = names.ggufNames(for: spec)
        ggufName = all.filter { file.tensor(named: $0.value) != nil }
        permutedHeads = names.ggufPermutedHeads(for: spec)
        normShift = names.ggufNormShift
        conv1D = names.linearsTransposed
            ? Set((0..<spec.numLayers).flatMap { i in spec.linears(layer: i).map { names.module($0, layer: i) + ".weight" } }) : []
        var slices: [String: GGUFTensorInfo] = [:]
        for (hf, (g, e)) in names.ggufExpertSlices(for: spec) {
            guard let t = file.tensor(named: g), t.dimensions.count == 3, e < t.dimensions[2] else { continue }
            let bytes = t.byteCount / t.dimensions[2]
            slices[hf] = GGUFTensorInfo(name: "\(g)[\(e)]", type: t.type, dimensions: Array(t.dimensions.prefix(2)),
                                        offset: t.offset + e * bytes, byteCount: bytes)
        }
        expertSlices = slices
    }

    /// A source reading `file` under `ggufNames` (Hugging Face name → GGUF name, one GGUF name
    /// per Hugging Face name), stored as Hugging Face stores them but for the reversed dimensions
    /// (T5: no permuted rows, no shifted norms, no Conv1D).
    public init(file: GGUFFile, ggufNames: [String: String]) {
        self.file = file
        ggufName = ggufNames.filter { file.tensor(named: $0.value) != nil }
        permutedHeads = [:]
        normShift = 0
        conv1D = []
        expertSlices = [:]
    }

    public var tensorNames: [String] {
        let hfOf = Dictionary(uniqueKeysWithValues: ggufName.map { ($0.value, $0.key) })
        var slicesOf: [String: [String]] = [:]
        for (hf, t) in expertSlices { slicesOf[String(t.name.prefix { $0 != "[" }), default: []].append(hf) }
        return file.tensors.flatMap { slicesOf[$0.name]?.sorted() ?? [hfOf[$0.name] ?? $0.name] }
    }

    public func shape(of name: String) -> [Int]? {
        guard let t = tensor(for: name) else { return nil }
        if t.dimensions.count == 1, DecoderNames.ggufStoresAsVector(t.name) { return [1, t.dimensions[0]] }
        return conv1D.contains(name) ? t.dimensions : t.dimensions.reversed()
    }

    public func blockWeight(_ name: String) throws -> GGUFBlockMatrix? {
        guard keepsBlocks, let t = tensor(for: name), t.dimensions.count == 2,
              GGUFBlockMatrix.keptTypes.contains(t.type), t.dimensions[0] % t.type.blockSize == 0 else { return nil }
        let order = permutedHeads[name].map { Self.rotaryRowOrder(rows: t.dimensions[1], heads: $0) }
        return try GGUFBlockMatrix(file: file, tensor: t, rowOrder: order)
    }

    public func ropeFrequencyFactors() throws -> [Float]? {
        guard let t = file.tensor(named: "rope_freqs.weight") else { return nil }
        return try file.dequantize(t)
    }

    public func load(_ name: String) throws -> Buffer<Float> {
        guard let t = tensor(for: name) else {
            throw ModelError.missingWeight(path: path, name: name)
        }
        let g = t.name
        let out = Buffer<Float>(count: t.elementCount)
        try file.dequantize(t, into: out.buffer)
        if normShift != 0 && g.hasSuffix("norm.weight") {
            for i in 0..<out.count { out[i] -= normShift }
        }
        if let heads = permutedHeads[name] {
            return Self.reorderRotaryRows(out, heads: heads, rowLength: t.dimensions.count > 1 ? t.dimensions[0] : 1, toGGUF: false)
        }
        if conv1D.contains(name), t.dimensions.count == 2 {
            return transposed(out, rows: t.dimensions[1], columns: t.dimensions[0])
        }
        return out
    }

    /// llama.cpp stores each head's q/k rows as interleaved pairs (2j, 2j+1); Hugging Face
    /// keeps halves (j, j + D/2): GGUF row h·D + 2j + t is HF row h·D + t·D/2 + j. Reorders the
    /// rows of `w` from Hugging Face's order to llama.cpp's (`toGGUF`, as an export writes them)
    /// or back (as loading reads them).
    static func reorderRotaryRows(_ w: Buffer<Float>, heads: Int, rowLength: Int, toGGUF: Bool) -> Buffer<Float> {
        let order = rotaryRowOrder(rows: w.count / rowLength, heads: heads)
        let out = Buffer<Float>(count: w.count)
        for (hf, gguf) in order.enumerated() {
            let (to, from) = toGGUF ? (gguf, hf) : (hf, gguf)
            (out.pointer + to * rowLength).update(from: w.pointer + from * rowLength, count: rowLength)
        }
        return out
    }

    /// For each Hugging Face row of a q / k weight of `heads` heads, the llama.cpp row holding it:
    /// HF row h·D + t·D/2 + j is GGUF row h·D + 2j + t.
    static func rotaryRowOrder(rows: Int, heads: Int) -> [Int] {
        let d = rows / heads, half = d / 2
        var order = [Int](repeating: 0, count: rows)
        for h in 0..<heads { for j in 0..<half { for t in 0..<2 { order[h * d + t * half + j] = h * d + 2 * j + t } } }
        return order
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

    public var tensorNames: [String] { collection.names }

    public func shape(of name: String) -> [Int]? { collection.info(name)?.shape }

    public func load(_ name: String) throws -> Buffer<Float> {
        guard let info = collection.info(name) else { throw ModelError.missingWeight(path: path, name: name) }
        let out = Buffer<Float>(uninitializedCount: info.elementCount)   // every value is written
        try collection.floats(name, into: out.buffer)
        return out
    }

    public func load(_ name: String, elements: Range<Int>) throws -> Buffer<Float> {
        let out = Buffer<Float>(uninitializedCount: elements.count)   // every value is written
        try collection.floats(name, elements: elements, into: out.buffer)
        return out
    }

    public func quantizedWeight(_ name: String) throws -> (any StoredQuantizedMatrix)? {
        if let q = try FourBitTensor.load(name, from: collection) { return q }
        // The threshold is a run-time setting (config.json's llm_int8_threshold), set by the loader.
        return try Int8Tensor.load(name, from: collection, threshold: 6)
    }
}

extension GGUFWeightSource {
    /// A source reading `file` under the names of `config`'s family.
    public init(file: GGUFFile, config: any DecoderConfig, keepsBlocks: Bool = false) {
        self.init(file: file, names: config.names, spec: config.decoderSpec)
        self.keepsBlocks = keepsBlocks
    }
}
