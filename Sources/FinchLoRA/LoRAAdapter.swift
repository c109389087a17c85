import FinchCore
import FinchFormats
import Foundation

/// A named LoRA adapter: its config and one `LoRAModule` per wrapped linear layer, in PEFT's
/// on-disk format (`adapter_config.json` + `adapter_model.safetensors`, keys
/// `base_model.model.<module>.lora_A.weight` [R, I], `.lora_B.weight` [O, R],
/// `.lora_magnitude_vector` [O] for DoRA).
public final class LoRAAdapter: @unchecked Sendable {
    public var config: AdapterConfig
    /// Module name (e.g. `model.layers.0.self_attn.q_proj`) → factors.
    public var modules: [String: LoRAModule]
    /// Module name (e.g. `model.embed_tokens`, `lm_head`) → its trained copy (`modules_to_save`).
    public var copies: [String: ModuleCopy]
    /// Trained rows of the embedding (`trainable_token_indices`).
    public var tokenRows: TokenRows?

    public init(config: AdapterConfig, modules: [String: LoRAModule], copies: [String: ModuleCopy] = [:], tokenRows: TokenRows? = nil) {
        self.config = config
        self.modules = modules
        self.copies = copies
        self.tokenRows = tokenRows
    }

    static let prefix = "base_model.model."

    /// Loads a PEFT adapter directory. `linears` maps each linear layer of the base model to
    /// its (out, in) features; every tensor must name one of them with matching shapes, or be the
    /// copy of a module `modules_to_save` names (`base_model.model.<module>.weight`) among
    /// `copyable` (module name → (rows, columns): the modules the model can train in full).
    /// With `trainable_token_indices`, the rows' values (`base_model.model.<embedding>.token_adapter.trainable_tokens_delta`)
    /// for `inputEmbedding`, one of `copyable`.
    public static func load(directory: String, linears: [String: (out: Int, in: Int)],
                            copyable: [String: (rows: Int, columns: Int)] = [:], inputEmbedding: String? = nil) throws -> LoRAAdapter {
        let cfgPath = (directory as NSString).appendingPathComponent("adapter_config.json")
        let wPath = (directory as NSString).appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: cfgPath), FileManager.default.fileExists(atPath: wPath) else {
            let pickle = (directory as NSString).appendingPathComponent("adapter_model.bin")
            if FileManager.default.fileExists(atPath: pickle) { throw FormatError.pickleCheckpoint(path: pickle) }
            throw AdapterError.notFound(path: directory)
        }
        let config = try AdapterConfig.load(path: cfgPath)
        let file = try SafeTensorsFile(path: wPath)
        // Group tensors by module; accept PEFT's saved names and the in-memory ones with ".default".
        var parts: [String: [String: String]] = [:], copyNames: [String: String] = [:]
        let saved = try savedModules(config, copyable: copyable, path: cfgPath)
        let tokenModule = try trainedTokenModule(config, inputEmbedding: inputEmbedding, path: cfgPath)
        var tokenName: String?
        for key in file.tensorNames {
            var k = key
            if k.hasPrefix(prefix) { k.removeFirst(prefix.count) }
            if let t = tokenModule, k == t + TokenRows.savedSuffix || k == t + TokenRows.savedSuffix + ".default" {
                tokenName = key
                continue
            }
            if let m = saved.first(where: { k == $0 + ".weight" || k == $0 + ".modules_to_save.default.weight" }) {
                copyNames[m] = key
                continue
            }
            let kinds = ["lora_A.weight", "lora_B.weight", "lora_magnitude_vector", "lora_A.default.weight",
                         "lora_B.default.weight", "lora_magnitude_vector.default.weight", "lora_magnitude_vector.weight"]
            guard let kind = kinds.first(where: { k.hasSuffix("." + $0) }) else {
                throw AdapterError.unsupported("\(wPath): tensor '\(key)' is not a LoRA factor (only lora_A / lora_B / lora_magnitude_vector are supported)")
            }
            let module = String(k.dropLast(kind.count + 1))
            let short = kind.hasPrefix("lora_A") ? "A" : kind.hasPrefix("lora_B") ? "B" : "m"
            parts[module, default: [:]][short] = key
        }
        func tensor(_ n: String, _ shape: [Int]) throws -> Buffer<Float> {
            guard let info = file.info(n) else { throw AdapterError.missingTensor(path: wPath, name: n) }
            guard info.shape == shape else { throw AdapterError.badShape(path: wPath, name: n, expected: shape, actual: info.shape) }
            return Buffer(try file.floats(n))
        }
        var modules: [String: LoRAModule] = [:]
        for (module, names) in parts {
            guard let dims = linears[module] else { throw AdapterError.unknownModule(path: wPath, name: module) }
            guard let aName = names["A"] else { throw AdapterError.missingTensor(path: wPath, name: prefix + module + ".lora_A.weight") }
            guard let bName = names["B"] else { throw AdapterError.missingTensor(path: wPath, name: prefix + module + ".lora_B.weight") }
            let r = config.rank(for: module)
            let a = try tensor(aName, [r, dims.in])
            let b = try tensor(bName, [dims.out, r])
            var mag: Buffer<Float>?
            if config.useDoRA {
                guard let mName = names["m"] else {
                    throw AdapterError.missingTensor(path: wPath, name: prefix + module + ".lora_magnitude_vector")
                }
                mag = try tensor(mName, [dims.out])
            }
            let lora = LoRAModule(rank: r, scaling: Float(config.scaling(for: module)), a: a, b: b, magnitude: mag,
                                  inFeatures: dims.in, outFeatures: dims.out)
            lora.dropout = Float(config.loraDropout)
            modules[module] = lora
        }
        if modules.isEmpty { throw AdapterError.invalidConfig(path: wPath, reason: "the adapter has no LoRA tensors") }
        var copies: [String: ModuleCopy] = [:]
        for m in saved {
            guard let n = copyNames[m] else { throw AdapterError.missingTensor(path: wPath, name: prefix + m + ".weight") }
            let (rows, columns) = copyable[m]!
            copies[m] = ModuleCopy(rows: rows, columns: columns, values: try tensor(n, [rows, columns]))
        }
        var tokenRows: TokenRows?
        if let t = tokenModule, let indices = config.trainableTokenIndices {
            guard let n = tokenName else { throw AdapterError.missingTensor(path: wPath, name: prefix + t + TokenRows.savedSuffix) }
            let (rows, columns) = copyable[t]!
            tokenRows = try TokenRows(module: t, indices: indices, values: try tensor(n, [indices.count, columns]), vocabulary: rows, columns: columns)
        }
        return LoRAAdapter(config: config, modules: modules, copies: copies, tokenRows: tokenRows)
    }

    /// The embedding `config.trainableTokenIndices` trains rows of: the model's input embedding
    /// (PEFT's dict form must name it); nil without trainable tokens.
    /// - Throws: ``AdapterError/unsupported(_:)`` when the model has no embedding Finch trains rows
    ///   of, or the config names another module, or modules_to_save trains the embedding in full too.
    public static func trainedTokenModule(_ config: AdapterConfig, inputEmbedding: String?, path: String) throws -> String? {
        guard config.trainableTokenIndices != nil else { return nil }
        guard let e = inputEmbedding else {
            throw AdapterError.unsupported("\(path): trainable_token_indices: Finch trains no embedding rows for this architecture")
        }
        if let m = config.trainableTokenModule, !(e == m || e.hasSuffix("." + m)) {
            throw AdapterError.unsupported("\(path): trainable_token_indices names '\(m)'; Finch trains rows of the input embedding (\(e)) only")
        }
        if config.savesModule(e) {
            throw AdapterError.unsupported("\(path): trainable_token_indices and modules_to_save both train \(e); keep one")
        }
        return e
    }

    /// The modules `config.modulesToSave` names among `copyable`, sorted.
    /// - Throws: ``AdapterError/unsupported(_:)`` for an entry that names none of them (Finch trains
    ///   only the embedding and the LM head in full).
    public static func savedModules(_ config: AdapterConfig, copyable: [String: (rows: Int, columns: Int)], path: String) throws -> [String] {
        var found: [String] = []
        for entry in config.modulesToSave {
            let matched = copyable.keys.filter { $0 == entry || $0.hasSuffix("." + entry) }
            guard !matched.isEmpty else {
                let can = copyable.keys.sorted()
                throw AdapterError.unsupported("\(path): modules_to_save names '\(entry)', which is not a module Finch trains in full for this model"
                    + (can.isEmpty ? " (it trains none for this architecture)" : " (it trains \(can.joined(separator: ", ")))"))
            }
            found += matched
        }
        return Array(Set(found)).sorted()
    }

    /// Writes the adapter as PEFT does: `adapter_config.json` and `adapter_model.safetensors`
    /// (f32, metadata `format: pt`), each replaced atomically. An adapter from an OLoRA / PiSSA
    /// initialization is written relative to the original base (`relativeToOriginalBase`); one from
    /// a LoftQ start with `init_lora_weights` true (its base is the LoftQ-quantized one, saved
    /// beside it; loading must not run LoftQ again, as PEFT's LoftQ example writes it).
    public func save(to directory: String) throws {
        if modules.values.contains(where: { $0.initial != nil }) {
            try relativeToOriginalBase().save(to: directory)
            return
        }
        if config.initLoRAWeights.lowercased() == "loftq" {
            var c = config
            c.initLoRAWeights = "true"
            try LoRAAdapter(config: c, modules: modules, copies: copies, tokenRows: tokenRows).save(to: directory)
            return
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var entries: [SafeTensorsWriter.Entry] = []
        for name in modules.keys.sorted() {
            let m = modules[name]!
            entries.append(.float32(name: Self.prefix + name + ".lora_A.weight", shape: [m.rank, m.inFeatures], values: m.a.array))
            entries.append(.float32(name: Self.prefix + name + ".lora_B.weight", shape: [m.outFeatures, m.rank], values: m.b.array))
            if let mag = m.magnitude {
                entries.append(.float32(name: Self.prefix + name + ".lora_magnitude_vector", shape: [m.outFeatures], values: mag.array))
            }
        }
        for name in copies.keys.sorted() {
            let m = copies[name]!
            entries.append(.float32(name: Self.prefix + name + ".weight", shape: [m.rows, m.columns], values: UnsafeBufferPointer(m.value.buffer)))
        }
        if let t = tokenRows {
            entries.append(.float32(name: Self.prefix + t.module + TokenRows.savedSuffix, shape: [t.indices.count, t.columns],
                                    values: t.value.array))
        }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"],
                                    to: (directory as NSString).appendingPathComponent("adapter_model.safetensors"))
        try config.write(to: (directory as NSString).appendingPathComponent("adapter_config.json"))
    }

    /// The adapter trained from an OLoRA / PiSSA start (A₀, B₀; the base holding W − s·B₀A₀) as a
    /// plain LoRA on the original W, as PEFT's `save_pretrained(path_initial_model_for_weight_conversion=…)`
    /// converts it: W − s·B₀A₀ + s·BA = W + s·[B, −B₀]·[A; A₀], so rank 2r with A = [A; A₀], B = [B, −B₀],
    /// lora_alpha × 2 (× √2 with rsLoRA: the same scaling), init_lora_weights true.
    public func relativeToOriginalBase() -> LoRAAdapter {
        var c = config
        c.r *= 2
        c.rankPattern = c.rankPattern.mapValues { $0 * 2 }
        let factor = c.useRSLoRA ? 2.0.squareRoot() : 2
        c.loraAlpha *= factor
        c.alphaPattern = c.alphaPattern.mapValues { $0 * factor }
        c.initLoRAWeights = "true"
        var out: [String: LoRAModule] = [:]
        for (name, m) in modules {
            guard let (a0, b0) = m.initial else { out[name] = m; continue }
            let r = m.rank, i = m.inFeatures, o = m.outFeatures
            let a = Buffer<Float>(m.a.array + a0)
            let b = Buffer<Float>(count: o * 2 * r)
            for row in 0..<o {
                for k in 0..<r {
                    b[row * 2 * r + k] = m.b[row * r + k]
                    b[row * 2 * r + r + k] = -b0[row * r + k]
                }
            }
            precondition(a.count == 2 * r * i)
            let converted = LoRAModule(rank: 2 * r, scaling: m.scaling, a: a, b: b, magnitude: nil, inFeatures: i, outFeatures: o)
            converted.dropout = m.dropout
            out[name] = converted
        }
        return LoRAAdapter(config: c, modules: out, copies: copies, tokenRows: tokenRows)
    }
}
