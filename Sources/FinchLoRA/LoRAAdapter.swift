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
    /// The frozen embedding and LM head (module name → weight [V, C]; a tied head the same object)
    /// of a model whose vocabulary grew, saved with the adapter as PEFT's `save_embedding_layers`
    /// saves them when the vocabulary changed: the new tokens' rows are part of the adapter.
    public var baseLayers: [String: LinearWeight]

    public init(config: AdapterConfig, modules: [String: LoRAModule], copies: [String: ModuleCopy] = [:], tokenRows: TokenRows? = nil,
                baseLayers: [String: LinearWeight] = [:]) {
        self.config = config
        self.modules = modules
        self.copies = copies
        self.tokenRows = tokenRows
        self.baseLayers = baseLayers
    }

    static let prefix = "base_model.model."

    /// Loads a PEFT adapter directory. `linears` maps each linear layer of the base model to
    /// its (out, in) features; every tensor must name one of them with matching shapes, or be the
    /// copy of a module `modules_to_save` names (`base_model.model.<module>.weight`) among
    /// `copyable` (module name → (rows, columns): the modules the model can train in full).
    /// With `trainable_token_indices`, the rows' values (`base_model.model.<embedding>.token_adapter.trainable_tokens_delta`)
    /// for `inputEmbedding`, one of `copyable`.
    public static func load(directory: String, linears: [String: (out: Int, in: Int)],
                            copyable: [String: (rows: Int, columns: Int)] = [:], inputEmbedding: String? = nil,
                            fusedExperts: FusedExpertTargets? = nil) throws -> LoRAAdapter {
        let cfgPath = (directory as NSString).appendingPathComponent("adapter_config.json")
        let wPath = (directory as NSString).appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: cfgPath), FileManager.default.fileExists(atPath: wPath) else {
            let pickle = (directory as NSString).appendingPathComponent("adapter_model.bin")
            if FileManager.default.fileExists(atPath: pickle) { throw FormatError.pickleCheckpoint(path: pickle) }
            throw AdapterError.notFound(path: directory)
        }
        var config = try AdapterConfig.load(path: cfgPath)
        let file = try SafeTensorsFile(path: wPath)
        // Group tensors by module; accept PEFT's saved names and the in-memory ones with ".default".
        var parts: [String: [String: String]] = [:], copyNames: [String: String] = [:]
        let saved = try savedModules(config, copyable: copyable, path: cfgPath)
        let tokenModule = try trainedTokenModule(config, inputEmbedding: inputEmbedding, path: cfgPath)
        var tokenName: String?
        var baseNames: [String: String] = [:]
        for key in file.tensorNames {
            var k = key
            if k.hasPrefix(prefix) { k.removeFirst(prefix.count) }
            if let t = tokenModule, k == t + TokenRows.savedSuffix || k == t + TokenRows.savedSuffix + ".default" {
                tokenName = key
                continue
            }
            if let m = saved.first(where: { k == $0 + ".weight" || k == $0 + ".modules_to_save.weight" || k == $0 + ".modules_to_save.default.weight" }) {
                copyNames[m] = key
                continue
            }
            if let (m, role) = baseLayerKey(k, copyable: copyable) {
                // A head tied to the embedding carries the embedding's trained rows again: the same values.
                if role == .tiedTokenRows { continue }
                baseNames[m] = key
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
        // PEFT's target_parameters on fused experts: each expert's share as its own modules.
        let targetParameters = config.extra["target_parameters"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !targetParameters.isEmpty {
            guard let fused = fusedExperts else {
                throw AdapterError.unsupported("\(cfgPath): target_parameters \(targetParameters) (LoRA on parameters rather than modules) is supported on the fused experts of a mixture of experts only")
            }
            if config.useDoRA { throw AdapterError.unsupported("\(cfgPath): DoRA on target_parameters (PEFT has none)") }
            var shortNames = Set<String>()
            for (path, block) in fused.blocks {
                for wrapped in [path + ".base_layer", path] {
                    guard let names = parts.removeValue(forKey: wrapped) else { continue }
                    guard let aName = names["A"], let bName = names["B"], let ai = file.info(aName), let bi = file.info(bName),
                          ai.shape.count == 2, bi.shape.count == 2 else {
                        throw AdapterError.invalidConfig(path: wPath, reason: "\(wrapped): a fused experts' LoRA needs a 2-D lora_A and lora_B")
                    }
                    let r = config.rank(for: path), e = block.experts, c = block.hidden, f = block.size
                    let rows: [(name: String, count: Int)]
                    let targets: [[String]]
                    if ai.shape == [r * e, c] && bi.shape == [2 * f, r * e] {
                        rows = [("gate", f), ("up", f)]; targets = [block.gate, block.up]
                    } else if ai.shape == [r * e, f] && bi.shape == [c, r * e] {
                        rows = [("down", c)]; targets = [block.down]
                    } else {
                        throw AdapterError.invalidConfig(path: wPath, reason: "\(wrapped): lora_A \(ai.shape) and lora_B \(bi.shape) are neither experts.gate_up_proj's ([\(r * e), \(c)], [\(2 * f), \(r * e)]) nor experts.down_proj's ([\(r * e), \(f)], [\(c), \(r * e)]) for rank \(r) and \(e) experts")
                    }
                    let inF = ai.shape[1]
                    let pieces = FusedExpertTargets.split(a: try file.floats(aName), b: try file.floats(bName), rank: r, experts: e,
                                                          inFeatures: inF, rows: rows)
                    for p in pieces {
                        let k = rows.firstIndex { $0.name == p.name }!
                        let module = targets[k][p.expert], out = rows[k].count
                        guard let dims = linears[module], dims.in == inF, dims.out == out else { throw AdapterError.unknownModule(path: wPath, name: module) }
                        let lora = LoRAModule(rank: r, scaling: Float(config.scaling(for: path)), a: Buffer(p.a), b: Buffer(p.b),
                                              magnitude: nil, inFeatures: inF, outFeatures: out)
                        lora.dropout = Float(config.loraDropout)
                        modules[module] = lora
                        shortNames.insert(String(module.split(separator: ".").last!))
                    }
                }
            }
            // From here on the adapter is one on per-expert modules (as Finch saves it): its config says so.
            for (from, to) in fused.aliases where parts[from] != nil {
                parts[to] = parts.removeValue(forKey: from)
                shortNames.insert(String(to.split(separator: ".").last!))
            }
            if case .names(let n) = config.targetModules {
                config.targetModules = .names(Array(Set(n).union(shortNames)).sorted())
            }
            config.extra["target_parameters"] = nil
        }
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
        var baseLayers: [String: LinearWeight] = [:]
        for (m, n) in baseNames {
            let (rows, columns) = copyable[m]!
            baseLayers[m] = LinearWeight(outFeatures: rows, inFeatures: columns, storage: .f32(try tensor(n, [rows, columns])))
        }
        return LoRAAdapter(config: config, modules: modules, copies: copies, tokenRows: tokenRows, baseLayers: baseLayers)
    }

    /// What a saved tensor of a frozen embedding or head is, in PEFT's `save_embedding_layers` layout.
    enum BaseLayerRole { case base, tiedTokenRows }

    /// The module and role of key `k` (the prefix removed) when it holds a frozen embedding or head
    /// saved with the adapter: `<m>.weight` (a module not in modules_to_save), `<m>.original_module.weight`
    /// (beside a modules_to_save copy), `<m>.token_adapter.base_layer.weight` (under trainable tokens),
    /// and a tied head's `<m>.token_adapter.trainable_tokens_delta`.
    static func baseLayerKey(_ k: String, copyable: [String: (rows: Int, columns: Int)]) -> (String, BaseLayerRole)? {
        for suffix in [".original_module.weight", ".token_adapter.base_layer.weight", ".weight"] where k.hasSuffix(suffix) {
            let m = String(k.dropLast(suffix.count))
            if copyable[m] != nil { return (m, .base) }
        }
        for suffix in [TokenRows.savedSuffix, TokenRows.savedSuffix + ".default"] where k.hasSuffix(suffix) {
            let m = String(k.dropLast(suffix.count))
            if copyable[m] != nil { return (m, .tiedTokenRows) }
        }
        return nil
    }

    /// The vocabulary an adapter directory's saved embedding, head or copies of them have (their rows),
    /// nil when it saves none; read from the file's header alone.
    /// - Throws: ``AdapterError/invalidConfig(path:reason:)`` when they disagree.
    public static func savedVocabulary(directory: String, copyable: [String: (rows: Int, columns: Int)]) throws -> Int? {
        let wPath = (directory as NSString).appendingPathComponent("adapter_model.safetensors")
        guard !copyable.isEmpty, FileManager.default.fileExists(atPath: wPath) else { return nil }
        let file = try SafeTensorsFile(path: wPath)
        var found: Int?
        for key in file.tensorNames {
            var k = key
            if k.hasPrefix(prefix) { k.removeFirst(prefix.count) }
            let full = [".modules_to_save.weight", ".modules_to_save.default.weight"].contains { k.hasSuffix($0) }
            guard full || baseLayerKey(k, copyable: copyable)?.1 == .base, let rows = file.info(key)?.shape.first else { continue }
            if let f = found, f != rows {
                throw AdapterError.invalidConfig(path: wPath, reason: "its saved embedding / head tensors have \(f) and \(rows) rows; they must hold one vocabulary")
            }
            found = rows
        }
        return found
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
            try LoRAAdapter(config: c, modules: modules, copies: copies, tokenRows: tokenRows, baseLayers: baseLayers).save(to: directory)
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
        // A grown vocabulary: the frozen embedding and head too, named as PEFT names them for each wrapper.
        for name in baseLayers.keys.sorted() {
            let w = baseLayers[name]!
            let values = w.floatValues(), shape = [w.outFeatures, w.inFeatures]
            withExtendedLifetime(values) {   // its values are copied into the entries
                let all = UnsafeBufferPointer(values.buffer)
                if let copy = copies[name] {
                    entries.append(.float32(name: Self.prefix + name + ".modules_to_save.weight", shape: shape, values: UnsafeBufferPointer(copy.value.buffer)))
                    entries.append(.float32(name: Self.prefix + name + ".original_module.weight", shape: shape, values: all))
                } else if let t = tokenRows, t.module == name || baseLayers[t.module] === w {
                    entries.append(.float32(name: Self.prefix + name + ".token_adapter.base_layer.weight", shape: shape, values: all))
                    if t.module != name {
                        entries.append(.float32(name: Self.prefix + name + TokenRows.savedSuffix, shape: [t.indices.count, t.columns], values: t.value.array))
                    }
                } else {
                    entries.append(.float32(name: Self.prefix + name + ".weight", shape: shape, values: all))
                }
            }
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
        return LoRAAdapter(config: c, modules: out, copies: copies, tokenRows: tokenRows, baseLayers: baseLayers)
    }
}
