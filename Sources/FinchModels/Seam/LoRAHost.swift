import FinchCore
import FinchLoRA
import FinchQuant
import Foundation

/// How `LoRAHost.createAdapter` leaves LoftQ's bases: quantized (training: every layer the load
/// would quantize is quantized), or their values unquantized in the layers' own type with the other
/// layers untouched (what PEFT's `loftq_init` leaves when it loads a LoftQ adapter).
public enum LoftQBases: Sendable { case quantized, dequantized }

/// One adaptable linear layer of a model: its full module name (as PEFT names it), the layer
/// in place now (frozen, or wrapped with adapters), and how to swap it.
public struct LinearSlot {
    public let name: String
    public let get: () -> any LinearLayer
    public let set: (any LinearLayer) -> Void
    public init(name: String, get: @escaping () -> any LinearLayer, set: @escaping (any LinearLayer) -> Void) {
        self.name = name; self.get = get; self.set = set
    }
}

/// A model that takes LoRA adapters by swapping its linear layers (`LoRALinear` around the
/// frozen weight): loading PEFT adapters, switching, disabling, merging, training. A family
/// lists its slots; everything else is this extension.
public protocol LoRAHost: AnyObject {
    /// Every linear layer an adapter may target (the LM head excluded), in checkpoint order.
    var linearSlots: [LinearSlot] { get }
    /// The PEFT config of each loaded adapter, by name.
    var adapterConfigs: [String: AdapterConfig] { get set }
    /// The family's default `target_modules` (PEFT's per-architecture default; q/v for LLaMA).
    var defaultTargetModules: [String] { get }
    /// Whether the checkpoint stores the linears [in, out] (GPT-2's Conv1D): PEFT's `fan_in_fan_out`.
    var linearsFanInFanOut: Bool { get }
    /// Reads a llama.cpp LoRA adapter GGUF made for this model (see `DecoderConfig.ggufLoRAAdapter`).
    func ggufLoRAAdapter(path: String) throws -> LoRAAdapter
    /// PEFT's `task_type` for adapters of this model (`CAUSAL_LM`; `SEQ_2_SEQ_LM` for T5), which
    /// decides the model class PEFT wraps the base in.
    var peftTaskType: String { get }
    /// Whether loading with a quantization quantizes this layer (every one but T5's FFN output,
    /// which transformers keeps unquantized).
    func quantizesAtLoad(_ slot: String) -> Bool
    /// The modules an adapter may train in full (PEFT's `modules_to_save`): module name → its
    /// frozen weight (a decoder's embedding and LM head; none by default).
    var copyableModules: [String: LinearWeight] { get }
    /// Each adapter's trained copies (module name → copy), by adapter name.
    var moduleCopies: [String: [String: ModuleCopy]] { get set }
    /// Each adapter's trained embedding rows (`trainable_token_indices`), by adapter name.
    var tokenRows: [String: TokenRows] { get set }
    /// The embedding `trainable_token_indices` trains rows of (nil: none for this architecture).
    var inputEmbeddingName: String? { get }
    /// Puts the active adapter's copies in use in place of the frozen modules (empty: the frozen ones).
    func useModuleCopies(_ copies: [String: ModuleCopy])
    /// Grows the vocabulary (the rows of the embedding and the LM head) to `size`, new rows from
    /// `rows` (module name → [size − V, C]) where given, else transformers' mean resizing (`seed` nil:
    /// the mean alone). See `DecoderModel.growVocabulary`.
    func growVocabulary(to size: Int, rows: [String: Buffer<Float>], seed: UInt64?) throws
    /// The vocabulary before `growVocabulary` grew it (nil: as loaded). An adapter of a grown model
    /// carries the grown embedding and head (PEFT's `save_embedding_layers`).
    var vocabularyBeforeGrowth: Int? { get }
    /// How PEFT's LoRA on transformers 5's fused expert tensors (`target_parameters`) maps onto this
    /// model's per-expert linears (nil: the model has no experts).
    var fusedExpertTargets: FusedExpertTargets? { get }
}

extension LoRAHost {
    public var fusedExpertTargets: FusedExpertTargets? { nil }
    public var peftTaskType: String { "CAUSAL_LM" }
    public func quantizesAtLoad(_ slot: String) -> Bool { true }
    public var copyableModules: [String: LinearWeight] { [:] }
    public var inputEmbeddingName: String? { nil }
    public func useModuleCopies(_ copies: [String: ModuleCopy]) {}
    public var vocabularyBeforeGrowth: Int? { nil }
    public func growVocabulary(to size: Int, rows: [String: Buffer<Float>], seed: UInt64?) throws {
        throw AdapterError.unsupported("adding tokens: \(size) tokens need more rows than this model's embedding has; Finch grows the vocabulary of decoder-only models only (an encoder-decoder takes added tokens within its embedding's spare rows: add fewer)")
    }

    /// The weights adapter `name` puts in place of frozen modules: its `modules_to_save` copies, and
    /// for trainable tokens the embedding with its rows in place (also as a head tied to it).
    public func trainedCopies(of name: String?) -> [String: ModuleCopy] {
        guard let name else { return [:] }
        var out = moduleCopies[name] ?? [:]
        if let t = tokenRows[name], let merged = t.merged, let base = copyableModules[t.module] {
            for (module, w) in copyableModules where w === base { out[module] = merged }
        }
        return out
    }

    /// Each row's trained copies under per-request adapters (`spans` over `rows` rows, `trainedCopies`; rows outside
    /// them the base model's); nil without spans, or when no row uses a copy and neither does the model in use (then
    /// the weights in use serve every row).
    func rowCopies(_ spans: [AdapterSpan]?, rows n: Int) -> [[String: ModuleCopy]]? {
        guard let spans else { return nil }
        var perRow = [[String: ModuleCopy]](repeating: [:], count: n)
        for s in spans { let copies = trainedCopies(of: s.adapter); for r in s.rows { perRow[r] = copies } }
        return perRow.contains(where: { !$0.isEmpty }) || !activeModuleCopies.isEmpty ? perRow : nil
    }

    /// (rows, columns) of each module an adapter may train in full.
    public var copyableShapes: [String: (rows: Int, columns: Int)] { copyableModules.mapValues { ($0.outFeatures, $0.inFeatures) } }

    /// Every adaptable linear layer: full module name → (out, in) features.
    public var linearModules: [String: (out: Int, in: Int)] {
        var out: [String: (out: Int, in: Int)] = [:]
        for s in linearSlots { let l = s.get(); out[s.name] = (l.outFeatures, l.inFeatures) }
        return out
    }

    /// Names of the loaded adapters.
    public var adapterNames: [String] {
        var names = Set<String>()
        forEachLoRALinear { names.formUnion($0.adapters.keys) }
        return names.sorted()
    }

    /// Loads a PEFT adapter directory (or a llama.cpp LoRA adapter `.gguf` file) under `name`
    /// and makes it active. An adapter saved with `init_lora_weights` olora or pissa (not converted
    /// to a plain LoRA) is relative to the residual base PEFT's initialization leaves: its start
    /// (A₀, B₀) is computed again from the base weights and the adapter converted here, as PEFT's
    /// `path_initial_model_for_weight_conversion` converts it, so the base stays the model's own.
    /// One saved with loftq loads as PEFT loads it: initialized again, which rewrites each target's
    /// base to its LoftQ quantization (the layers' own type holding the values), then its factors.
    ///
    /// An adapter saved with the embedding and head of a grown vocabulary (PEFT's `save_embedding_layers`,
    /// a run that added tokens) grows this model's vocabulary to theirs, the new rows theirs; their old
    /// rows must equal the model's (it was trained on this base). `tokenizerSize`: the tokens of the
    /// tokenizer the adapter is used with, which the vocabulary must cover.
    public func loadAdapter(directory: String, name: String = "default", tokenizerSize: Int? = nil) throws {
        var isDir: ObjCBool = false
        let isGGUF = directory.hasSuffix(".gguf") && FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) && !isDir.boolValue
        var shapes = copyableShapes
        let vocabulary = copyableModules.first.map { $0.value.outFeatures } ?? 0
        let saved = isGGUF ? nil : try LoRAAdapter.savedVocabulary(directory: directory, copyable: shapes)
        if let t = tokenizerSize, t > max(vocabulary, saved ?? 0), !shapes.isEmpty {
            throw AdapterError.invalidConfig(path: directory, reason: "its tokenizer has \(t) tokens but the model \(vocabulary) rows, and the adapter saves no embedding of \(t) rows; save it with the embedding layers (PEFT: save_embedding_layers=True)")
        }
        if let v = saved, v != vocabulary {
            guard v > vocabulary else {
                throw AdapterError.invalidConfig(path: directory, reason: "its saved embedding / head have \(v) rows but the model \(vocabulary): it was made for another vocabulary")
            }
            shapes = shapes.mapValues { (v, $0.columns) }
        }
        let adapter = isGGUF
            ? try ggufLoRAAdapter(path: directory)
            : try LoRAAdapter.load(directory: directory, linears: linearModules, copyable: shapes, inputEmbedding: inputEmbeddingName,
                                   fusedExperts: fusedExpertTargets)
        // Every check that can refuse the adapter runs before the vocabulary grows (`adoptBaseLayers`), so that a
        // refused adapter leaves the model as it was.
        try checkAddable(adapter, name: name)
        let method = adapter.config.initLoRAWeights.lowercased()
        guard Self.rewritesBase(method) else {
            try adoptBaseLayers(of: adapter, directory: directory)
            return try addAdapter(adapter, name: name)
        }
        if method.hasPrefix("pissa_niter_") {
            throw AdapterError.unsupported("\(directory): the adapter was saved with init_lora_weights \(method) and not converted: it is relative to a base PEFT made from a random draw it did not save; convert it in PEFT (save_pretrained(path_initial_model_for_weight_conversion=…)) or train with pissa (Finch's runs save converted adapters)")
        }
        // The saved factors against the modules the config targets, before anything changes.
        let targets = linearModules.filter { adapter.config.targets($0.key) }
        guard Set(targets.keys) == Set(adapter.modules.keys) else {
            throw AdapterError.invalidConfig(path: directory, reason: "its factors name other modules than its target_modules select in this model (init_lora_weights \(method) is computed again for the selected ones)")
        }
        for (module, m) in adapter.modules where m.rank != adapter.config.rank(for: module) {
            throw AdapterError.invalidConfig(path: directory, reason: "its factors for \(module) have rank \(m.rank), its config gives \(adapter.config.rank(for: module))")
        }
        if method != "loftq" {
            if let q = firstQuantizedSlot(where: { targets[$0] != nil }) {
                throw AdapterError.unsupported("\(directory): the adapter was saved from an init_lora_weights \(method) start, which is computed again from the base weights, and \(q) is quantized: load the model with --dtype f32 or bf16")
            }
            var c = adapter.config
            c.fanInFanOut = linearsFanInFanOut
            let start = try LoRAAdapter.initialized(config: c, linears: linearModules, seed: 0, baseValues: baseValueReader()).adapter
            for (module, m) in adapter.modules { m.initial = (start.modules[module]!.a.array, start.modules[module]!.b.array) }
            try adoptBaseLayers(of: adapter, directory: directory)
            return try addAdapter(adapter.relativeToOriginalBase(), name: name)
        }
        let quantization: QuantizationConfig
        switch adapter.config.loftq?.bits ?? 4 {
        case 4: quantization = QuantizationConfig(type: .nf4, blocksize: 64)   // what PEFT's loftq_init quantizes with
        case 8: quantization = .int8()
        case let b: throw AdapterError.unsupported("\(directory): loftq_config.loftq_bits \(b) (PEFT's LoftQ quantizes to 4 or 8 bits)")
        }
        try adoptBaseLayers(of: adapter, directory: directory)
        let start = try createAdapter(config: adapter.config, name: name, seed: 0, quantization: quantization, loftqBases: .dequantized)
        for (module, m) in start.modules {
            let saved = adapter.modules[module]!   // the same modules and ranks (checked above)
            m.a.pointer.update(from: saved.a.pointer, count: m.a.count)
            m.b.pointer.update(from: saved.b.pointer, count: m.b.count)
        }
        for (module, copy) in start.copies { copy.value.pointer.update(from: adapter.copies[module]!.value.pointer, count: copy.value.count) }
        if let t = start.tokenRows, let saved = adapter.tokenRows { t.value.pointer.update(from: saved.value.pointer, count: t.value.count) }
        adapterConfigs[name] = adapter.config
        adapterParametersChanged()
    }

    /// An adapter's saved embedding and head (`LoRAAdapter.baseLayers`) against the model's: the
    /// vocabulary grown to theirs (the new rows theirs) when they have more rows; their old rows must
    /// equal the model's, which PEFT would overwrite with them (this base is not the one it was
    /// trained on otherwise).
    func adoptBaseLayers(of adapter: LoRAAdapter, directory: String) throws {
        guard let size = adapter.baseLayers.values.first?.outFeatures ?? adapter.copies.values.first?.rows else { return }
        let frozen = copyableModules
        let v = frozen.values.first?.outFeatures ?? size
        for (module, w) in adapter.baseLayers.sorted(by: { $0.key < $1.key }) {
            guard let mine = frozen[module] else { continue }
            let a = w.floatValues(), b = mine.floatValues(), n = v * mine.inFeatures
            if let i = (0..<n).first(where: { a[$0] != b[$0] }) {
                let row = i / mine.inFeatures
                if let before = vocabularyBeforeGrowth, row >= before {
                    throw AdapterError.unsupported("\(directory): the adapter's rows of added token \(row) differ from those the tokens already added here have (another adapter that added tokens is loaded): load it alone")
                }
                throw AdapterError.unsupported("\(directory): the adapter's saved \(module) differs from this model's at row \(row) (\(a[i]) against \(b[i])): it was trained on another copy of the base (another dtype or quantization); load it on that base")
            }
        }
        guard size > v else { return }
        var rows: [String: Buffer<Float>] = [:]
        for (module, w) in adapter.baseLayers {
            let c = w.inFeatures, values = w.floatValues()
            rows[module] = withExtendedLifetime(values) { Buffer(copying: values.pointer + v * c, count: (size - v) * c) }
        }
        try growVocabulary(to: size, rows: rows, seed: nil)
    }

    /// Adds an adapter under `name` (wrapping the layers it targets) and makes it active.
    public func addAdapter(_ adapter: LoRAAdapter, name: String = "default") throws {
        try checkAddable(adapter, name: name)
        let slots = Dictionary(uniqueKeysWithValues: linearSlots.map { ($0.name, $0) })
        for (module, lora) in adapter.modules {
            let slot = slots[module]!   // LoRAAdapter.load / initialized only name modules of `linearModules`
            let wrapped: LoRALinear
            if let w = slot.get() as? LoRALinear {
                wrapped = w
            } else {
                wrapped = LoRALinear(base: slot.get().frozenWeight, name: module)
                slot.set(wrapped)
            }
            wrapped.add(lora, as: name)
        }
        adapterConfigs[name] = adapter.config
        moduleCopies[name] = adapter.copies.isEmpty ? nil : adapter.copies
        if let t = adapter.tokenRows, t.merged == nil, let base = copyableModules[t.module] { t.attach(to: base) }
        tokenRows[name] = adapter.tokenRows
        setActiveAdapter(name)
    }

    /// Why `adapter` cannot be added under `name` (thrown): Conv1D layout that differs from the model's, an adapter
    /// loaded that rewrote the base, trainable tokens beside a copy of the same weight.
    func checkAddable(_ adapter: LoRAAdapter, name: String) throws {
        if adapter.config.fanInFanOut != linearsFanInFanOut {
            throw ModelError.adapterProblem("the adapter says fan_in_fan_out = \(adapter.config.fanInFanOut) but this model's "
                + "linear layers \(linearsFanInFanOut ? "are" : "are not") Conv1D ([in, out]); it was made for another architecture")
        }
        if let (other, c) = adapterConfigs.first(where: { $0.key != name && Self.rewritesBase($0.value.initLoRAWeights) }) {
            throw ModelError.adapterProblem("adapter '\(other)' (init_lora_weights \(c.initLoRAWeights)) rewrote the base weights, which another adapter is not relative to: load them in separate processes, or convert '\(other)' to a plain LoRA (PEFT: save_pretrained(path_initial_model_for_weight_conversion=…); Finch saves its own runs converted)")
        }
        try checkTokenRowsAgainstCopies(adapter)
    }

    /// The name of the first linear layer among those `selected` (by name) whose base is quantized.
    func firstQuantizedSlot(where selected: (String) -> Bool) -> String? {
        linearSlots.first { s in
            guard selected(s.name), case .quantized = baseWeight(s.get()).storage else { return false }
            return true
        }?.name
    }

    /// Reads a linear layer's base weight [O, I] as f32 by module name (what an initialization from
    /// the base weights reads).
    func baseValueReader() -> (String) -> [Float] {
        let slots = Dictionary(uniqueKeysWithValues: linearSlots.map { ($0.name, $0) })
        return { module in baseWeight(slots[module]!.get()).floatValues().array }
    }

    /// Refuses trainable tokens beside a modules_to_save copy of a module sharing the embedding's
    /// weight (a tied head): the copy would never be used.
    func checkTokenRowsAgainstCopies(_ adapter: LoRAAdapter) throws {
        if let t = adapter.tokenRows, let base = copyableModules[t.module],
           let clash = adapter.copies.keys.sorted().first(where: { copyableModules[$0] === base }) {
            throw AdapterError.unsupported("trainable_token_indices trains rows of \(t.module), which \(clash) shares (tied), and modules_to_save trains \(clash) in full too; keep one")
        }
    }

    /// Whether an adapter of this `init_lora_weights` rewrote the base when it was created or loaded
    /// (olora, pissa, pissa_niter_K, loftq).
    static func rewritesBase(_ method: String) -> Bool { LoRAAdapter.isDecompositionInit(method) || method.lowercased() == "loftq" }

    /// Makes `name` the adapter every wrapped layer applies; nil disables adapters (the base model answers).
    public func setActiveAdapter(_ name: String?) {
        forEachLoRALinear { $0.active = (name != nil && $0.adapters[name!] != nil) ? name : nil }
        useModuleCopies(trainedCopies(of: name))
    }

    /// The adapter in use, if any.
    public var activeAdapter: String? {
        var found: String?
        forEachLoRALinear { if let a = $0.active { found = a } }
        return found
    }

    /// Checks per-row adapters (`PassContext.rowAdapters`) for a call over `rows` rows: every
    /// named adapter is loaded, none is merged, and every span lies within the rows.
    /// - Throws: ``ModelError/adapterProblem(_:)`` naming the adapter or span at fault.
    public func checkRowAdapters(_ spans: [AdapterSpan], rows: Int) throws {
        let loaded = Set(adapterNames)
        for s in spans {
            if let a = s.adapter, !loaded.contains(a) { throw ModelError.adapterProblem("no adapter named '\(a)' is loaded; load it first (POST /v1/adapters, --adapter)") }
            guard s.rows.lowerBound >= 0, s.rows.upperBound <= rows else {
                throw ModelError.adapterProblem("adapter span \(s.rows) lies outside the call's \(rows) rows")
            }
        }
        if let (other, c) = adapterConfigs.first(where: { Self.rewritesBase($0.value.initLoRAWeights) }),
           spans.contains(where: { $0.adapter == nil }) {
            throw ModelError.adapterProblem("adapter '\(other)' (init_lora_weights \(c.initLoRAWeights)) rewrote the base weights, so rows without an adapter would not get the base model; serve the base from another process")
        }
        var mergedAny = false
        forEachLoRALinear { if $0.merged != nil { mergedAny = true } }
        if mergedAny { throw ModelError.adapterProblem("an adapter is merged into the base; unmerge it before serving adapters per request") }
    }

    /// Folds the active adapter into the base weights (forward then skips the adapter products).
    public func mergeActiveAdapter() throws { try forEachLoRALinear { try $0.merge() } }

    /// Largest |W_stored − (W + ΔW)| of the last merge over all layers: 0 for float bases, the
    /// requantization error for 4-bit ones.
    public var lastMergeRoundingError: Float {
        var m: Float = 0
        forEachLoRALinear { m = max(m, $0.lastMergeRoundingError) }
        return m
    }

    /// Restores the base weights of a merged adapter (f32 exactly up to rounding; bf16 re-rounds).
    public func unmergeAdapter() throws { try forEachLoRALinear { try $0.unmerge() } }

    /// The active adapter's trainable tensors with their gradient buffers (allocated here), in a
    /// fixed order (by module name, then A, B, magnitude), named as in PEFT's
    /// adapter_model.safetensors (`base_model.model.<module>.lora_A.weight`, …).
    public func trainableParameters() -> [(name: String, value: Buffer<Float>, grad: Buffer<Float>)] {
        var wrapped: [LoRALinear] = []
        forEachLoRALinear { if $0.active != nil { wrapped.append($0) } }
        var out: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)] = []
        for l in wrapped.sorted(by: { $0.name < $1.name }) {
            guard let a = l.active, let m = l.adapters[a] else { continue }
            m.enableGradients()
            for p in m.parameters { out.append(("base_model.model.\(l.name).\(p.suffix)", p.value, p.grad)) }
        }
        // modules_to_save: named as PEFT saves them
        if let a = activeAdapter, let copies = moduleCopies[a] {
            for (module, c) in copies.sorted(by: { $0.key < $1.key }) {
                c.enableGradients()
                out.append(("base_model.model.\(module).weight", c.value, c.grad!))
            }
        }
        if let a = activeAdapter, let t = tokenRows[a] {
            t.enableGradients()
            out.append(("base_model.model.\(t.module)\(TokenRows.savedSuffix)", t.value, t.grad!))
        }
        return out
    }

    /// Sets the active adapter's gradients to zero.
    public func zeroGradients() {
        forEachLoRALinear { l in if let a = l.active, let m = l.adapters[a] { m.enableGradients(); m.zeroGradients() } }
        if let a = activeAdapter {
            for c in (moduleCopies[a] ?? [:]).values { c.enableGradients(); c.zeroGradients() }
            if let t = tokenRows[a] { t.enableGradients(); t.zeroGradients() }
        }
    }

    /// The weights the active adapter puts in place of frozen modules (`trainedCopies(of:)`), by module name.
    public var activeModuleCopies: [String: ModuleCopy] { trainedCopies(of: activeAdapter) }

    /// The active adapter's trained embedding rows.
    public var activeTokenRows: TokenRows? { activeAdapter.flatMap { tokenRows[$0] } }

    /// Tells the wrapped layers that adapter values changed (after an optimizer step or a restore).
    public func adapterParametersChanged() {
        forEachLoRALinear { $0.parametersChanged() }
        activeTokenRows?.apply()   // the trained rows into the embedding in use
    }

    /// Adds a freshly initialized adapter (PEFT's init, seeded; see `LoRAAdapter.initialized`)
    /// under `name` and makes it active. OLoRA / PiSSA leave the residual W − scaling·B₀A₀ as each
    /// target's base. LoftQ (`init_lora_weights` loftq) needs the model loaded unquantized and
    /// `quantization` (nf4 / fp4, or LLM.int8): each target's base becomes its LoftQ quantization,
    /// every other layer the load would have quantized is quantized as the load would have.
    @discardableResult
    public func createAdapter(config: AdapterConfig, name: String = "default", seed: UInt64,
                              quantization: QuantizationConfig? = nil, loftqBases: LoftQBases = .quantized) throws -> LoRAAdapter {
        var config = config
        config.fanInFanOut = linearsFanInFanOut
        config.taskType = peftTaskType
        let loftq = config.initLoRAWeights.lowercased() == "loftq"
        if LoRAAdapter.isDecompositionInit(config.initLoRAWeights) || loftq {
            // They rewrite the base weights: refused where that cannot be done faithfully.
            if let q = firstQuantizedSlot(where: { loftq || config.targets($0) }) {
                throw AdapterError.unsupported(loftq
                    ? "init_lora_weights loftq quantizes the base itself, and \(q) is quantized already: load the model unquantized (finch train does so for loftq)"
                    : "init_lora_weights \(config.initLoRAWeights) moves part of each base weight into the adapter, and \(q) is quantized: load the model with --dtype f32 or bf16")
            }
            if let other = adapterNames.first {
                throw AdapterError.unsupported("init_lora_weights \(config.initLoRAWeights) rewrites the base weights, which adapter '\(other)' (already loaded) is relative to")
            }
        }
        var quantize: ((_ values: [Float], _ out: Int, _ in: Int) throws -> LinearWeight)?
        if loftq {
            guard let quantization else {
                throw AdapterError.unsupported("init_lora_weights loftq quantizes the base weights, and no quantization was given (--quantize nf4 or int8)")
            }
            let bits = quantization.isInt8 ? 8 : 4
            if let l = config.loftq, l.bits != bits {
                throw AdapterError.unsupported("loftq_bits \(l.bits) but the base is quantized to \(quantization.summary) (\(bits) bits): make them agree")
            }
            config.loftq = AdapterConfig.LoftQSettings(bits: bits, iterations: config.loftq?.iterations ?? 1)
            quantize = { values, o, i in try quantization.linear(outFeatures: o, inFeatures: i, values: Buffer(values)) }
        }
        let (adapter, residuals, bases) = try LoRAAdapter.initialized(config: config, linears: linearModules, seed: seed,
                                                                      quantize: quantize, baseValues: baseValueReader())
        // modules_to_save: a trainable copy of each, as PEFT starts them
        for module in try LoRAAdapter.savedModules(config, copyable: copyableShapes, path: "adapter config") {
            adapter.copies[module] = ModuleCopy(copying: copyableModules[module]!)
        }
        if let module = try LoRAAdapter.trainedTokenModule(config, inputEmbedding: inputEmbeddingName, path: "adapter config"),
           let indices = config.trainableTokenIndices {
            adapter.tokenRows = try TokenRows(module: module, indices: indices, base: copyableModules[module]!)
        }
        try checkTokenRowsAgainstCopies(adapter)
        if let quantization, loftq {
            // LoftQ: the targets take their quantized bases (a layer the load keeps unquantized takes
            // those values unquantized, as transformers would load PEFT's saved LoftQ base); the rest
            // is quantized as the load would have.
            for s in linearSlots {
                let old = s.get().frozenWeight
                let new: LinearWeight
                if let q = bases[s.name] {
                    new = quantizesAtLoad(s.name) && loftqBases == .quantized
                        ? q : LinearWeight(outFeatures: old.outFeatures, inFeatures: old.inFeatures, values: q.floatValues(), dtype: old.dtype)
                } else if quantizesAtLoad(s.name) && loftqBases == .quantized {
                    new = try quantization.linear(outFeatures: old.outFeatures, inFeatures: old.inFeatures, values: old.floatValues())
                } else {
                    continue
                }
                if old.int8 != nil { new.useInt8Products() }
                s.set(new)
            }
        }
        try addAdapter(adapter, name: name)
        // OLoRA / PiSSA: the base keeps W − scaling·B₀A₀.
        try forEachLoRALinear { l in if let residual = residuals[l.name] { try l.replaceBase(with: residual) } }
        return adapter
    }

    /// The adapter loaded under `name`, gathered from the wrapped layers (its factors are the
    /// live buffers the model trains), with `config`.
    public func adapter(named name: String, config: AdapterConfig) -> LoRAAdapter {
        var config = config
        config.fanInFanOut = linearsFanInFanOut
        config.taskType = peftTaskType
        var modules: [String: LoRAModule] = [:]
        forEachLoRALinear { l in if let m = l.adapters[name] { modules[l.name] = m } }
        // PEFT on transformers 5 loads adapters on experts onto the fused expert tensors, whose wrapper refuses
        // lora_dropout ≠ 0. Dropout does nothing outside training, so such an adapter is written with 0 (the
        // run's own setting stays in its training config).
        if config.loraDropout != 0, let fused = fusedExpertTargets {
            let experts = Set(fused.blocks.values.flatMap { $0.gate + $0.up + $0.down })
            if modules.keys.contains(where: experts.contains) { config.loraDropout = 0 }
        }
        return LoRAAdapter(config: config, modules: modules, copies: moduleCopies[name] ?? [:], tokenRows: tokenRows[name],
                           baseLayers: vocabularyBeforeGrowth == nil ? [:] : copyableModules)
    }

    /// Calls `body` with every wrapped layer.
    public func forEachLoRALinear(_ body: (LoRALinear) throws -> Void) rethrows {
        for s in linearSlots { if let w = s.get() as? LoRALinear { try body(w) } }
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
}

/// The frozen weight under a layer that may be wrapped.
public func baseWeight(_ layer: any LinearLayer) -> LinearWeight { layer.frozenWeight }

/// W [O, I] as `forward` applies it: the base weight, plus the active adapter when it is not merged
/// (folded into a copy; the layer is not changed).
public func effectiveWeight(_ layer: any LinearLayer) -> Buffer<Float> {
    (layer as? LoRALinear)?.effectiveWeight() ?? baseWeight(layer).floatValues()
}

extension ComputeBackend {
    /// y [R, O] = x [R, I] · Wᵣᵀ with each row's own weight `weights[r]` (per-request heads): the rows grouped by
    /// weight, one product per group.
    func linearForward(rowWeights weights: [LinearWeight], y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, scratch: Scratch) {
        guard let first = weights.first else { return }
        let c = first.inFeatures, o = first.outFeatures
        var groups: [(weight: LinearWeight, rows: [Int])] = []
        for (i, w) in weights.enumerated() {
            if let g = groups.firstIndex(where: { $0.weight === w }) { groups[g].rows.append(i) } else { groups.append((w, [i])) }
        }
        for g in groups {
            let xs = Buffer<Float>(count: g.rows.count * c), ys = Buffer<Float>(count: g.rows.count * o)
            for (k, i) in g.rows.enumerated() { (xs.pointer + k * c).update(from: x + i * c, count: c) }
            linearForward(g.weight, y: ys.pointer, x: xs.pointer, xBF16: nil, rows: g.rows.count, accumulate: false, scratch: scratch)
            for (k, i) in g.rows.enumerated() { (y + i * o).update(from: ys.pointer + k * o, count: o) }
        }
    }
}
