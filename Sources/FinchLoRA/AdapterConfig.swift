import FinchFormats
import Foundation

/// A LoRA adapter's settings, read from and written to PEFT's `adapter_config.json`.
///
/// Target modules follow PEFT: a list of names matches a module whose name equals an entry or
/// ends with `.entry`; a single string is a regular expression the whole module name must
/// match; `"all-linear"` means every linear layer but the output head.
public struct AdapterConfig: Sendable, Equatable {
    /// Which modules an adapter wraps.
    public enum Targets: Sendable, Equatable {
        case names([String])
        case regex(String)
        case allLinear
    }

    public var r: Int
    public var loraAlpha: Double
    public var loraDropout: Double = 0
    public var targetModules: Targets
    /// Only these decoder layers (nil = all).
    public var layersToTransform: [Int]? = nil
    /// "none" | "lora_only" | "all" (Finch supports "none": LLaMA linears have no bias).
    public var bias: String = "none"
    /// PEFT's `fan_in_fan_out`: the base layers store their weights [in, out] (GPT-2's Conv1D), which
    /// PEFT must know to merge; the factors are the same either way.
    public var fanInFanOut: Bool = false
    /// Scale by alpha / sqrt(r) instead of alpha / r.
    public var useRSLoRA = false
    /// Weight-decomposed LoRA (a trainable magnitude per output feature).
    public var useDoRA = false
    /// PEFT's `init_lora_weights`: true (kaiming-uniform A, zero B), "gaussian", "olora", "pissa",
    /// "pissa_niter_K" or "loftq".
    public var initLoRAWeights: String = "true"
    /// PEFT's `modules_to_save`: modules trained in full beside the adapter (a trainable copy of each
    /// that the adapter carries); an entry matches a module whose name equals it or ends with `.entry`.
    public var modulesToSave: [String] = []
    /// PEFT's `trainable_token_indices`: rows of the input embedding trained (`TokenRows`); nil: none.
    public var trainableTokenIndices: [Int]? = nil
    /// The embedding module the indices were given for (PEFT's dict form `{module: [ids]}`); nil: the
    /// list form (the model's input embedding).
    public var trainableTokenModule: String? = nil
    /// PEFT's `loftq_config` of an adapter initialized with LoftQ (nil: none, PEFT's `{}`).
    public var loftq: LoftQSettings? = nil
    /// PEFT's `eva_config` (nil: none; EVA then runs with PEFT's defaults).
    public var eva: EVASettings? = nil
    /// Per-module rank / alpha overrides (PEFT `rank_pattern`, `alpha_pattern`): key is a regex on the module name.
    public var rankPattern: [String: Int] = [:]
    public var alphaPattern: [String: Double] = [:]
    public var baseModelNameOrPath: String? = nil
    public var taskType: String = "CAUSAL_LM"
    /// Keys of the file this config was read from that Finch does not interpret (written back unchanged).
    public var extra: [String: JSONValue] = [:]

    /// PEFT's `LoftQConfig`: the bits the base is quantized to (4: nf4, 8: LLM.int8) and the
    /// number of alternating quantization / SVD rounds.
    public struct LoftQSettings: Sendable, Equatable {
        public var bits: Int
        public var iterations: Int
        public init(bits: Int, iterations: Int) { self.bits = bits; self.iterations = iterations }
    }

    /// PEFT's `EvaConfig`: the rank budget's spread (a layer's rank at most round(r·rho)), the cosine similarity
    /// at which a layer's components count as settled, whether masked labels' tokens are left out, whitening
    /// (A's rows divided by √(singular value)), and alpha scaled with a layer's rank.
    public struct EVASettings: Sendable, Equatable {
        public var rho: Double = 2
        public var tau: Double = 0.99
        public var useLabelMask = true
        public var whiten = false
        public var adjustScalingFactors = true
        public init(rho: Double = 2, tau: Double = 0.99, useLabelMask: Bool = true, whiten: Bool = false, adjustScalingFactors: Bool = true) {
            self.rho = rho; self.tau = tau; self.useLabelMask = useLabelMask; self.whiten = whiten; self.adjustScalingFactors = adjustScalingFactors
        }
    }

    public init(r: Int, loraAlpha: Double, targetModules: Targets, loraDropout: Double = 0,
                useRSLoRA: Bool = false, useDoRA: Bool = false) {
        self.r = r; self.loraAlpha = loraAlpha; self.targetModules = targetModules
        self.loraDropout = loraDropout; self.useRSLoRA = useRSLoRA; self.useDoRA = useDoRA
    }

    /// Whether `modules_to_save` names `module` (PEFT's match: equal, or ending with `.entry`).
    public func savesModule(_ module: String) -> Bool {
        modulesToSave.contains { module == $0 || module.hasSuffix("." + $0) }
    }

    /// Rank of one module (after `rank_pattern`).
    public func rank(for module: String) -> Int {
        for (pattern, value) in rankPattern.sorted(by: { $0.key < $1.key }) where Self.patternMatches(pattern, module) { return value }
        return r
    }

    /// lora_alpha of `module` (its `alpha_pattern` entry, else `loraAlpha`).
    public func loraAlpha(for module: String) -> Double {
        for (pattern, value) in alphaPattern.sorted(by: { $0.key < $1.key }) where Self.patternMatches(pattern, module) { return value }
        return loraAlpha
    }

    /// The factor the adapter's product is multiplied by: alpha / r, or alpha / sqrt(r) with rsLoRA.
    public func scaling(for module: String) -> Double {
        let rank = Double(rank(for: module)), alpha = loraAlpha(for: module)
        return useRSLoRA ? alpha / rank.squareRoot() : alpha / rank
    }

    /// PEFT's pattern rule: the key matches the module name or a dotted suffix of it.
    static func patternMatches(_ pattern: String, _ module: String) -> Bool {
        module.range(of: "^(.*\\.)?(\(pattern))$", options: .regularExpression) != nil
    }

    /// Whether the adapter wraps `module` (a full name such as `model.layers.3.self_attn.q_proj`).
    /// `isOutputHead` marks the LM head, which "all-linear" excludes.
    public func targets(_ module: String, isOutputHead: Bool = false) -> Bool {
        let matched: Bool
        switch targetModules {
        case .allLinear: matched = !isOutputHead
        case .regex(let re):
            matched = module.range(of: "^(?:\(re))$", options: .regularExpression) != nil
        case .names(let names):
            matched = names.contains { module == $0 || module.hasSuffix("." + $0) }
        }
        guard matched else { return false }
        if let layers = layersToTransform {
            guard let idx = Self.layerIndex(module) else { return false }
            return layers.contains(idx)
        }
        return true
    }

    /// N in "...layers.N...", if any.
    static func layerIndex(_ module: String) -> Int? {
        let parts = module.split(separator: ".")
        for (i, p) in parts.enumerated() where (p == "layers" || p == "h" || p == "blocks") && i + 1 < parts.count {
            if let n = Int(parts[i + 1]) { return n }
        }
        return nil
    }

    /// Throws when Finch cannot apply the adapter as PEFT would.
    public func validate(path: String) throws {
        func fail(_ r: String) -> AdapterError { .invalidConfig(path: path, reason: r) }
        if r <= 0 { throw fail("r must be positive (got \(r))") }
        if !(loraAlpha > 0) { throw fail("lora_alpha must be positive (got \(loraAlpha))") }
        if !(loraDropout >= 0 && loraDropout < 1) { throw fail("lora_dropout must be in [0, 1) (got \(loraDropout))") }
        if !["none", "lora_only", "all"].contains(bias) { throw fail("bias must be none, lora_only or all (got \(bias))") }
        for (k, v) in rankPattern where v <= 0 { throw fail("rank_pattern[\(k)] must be positive") }
    }
}

/// Errors of adapter files and settings.
public enum AdapterError: Error, CustomStringConvertible, Sendable {
    case notFound(path: String)
    case invalidConfig(path: String, reason: String)
    case missingTensor(path: String, name: String)
    case badShape(path: String, name: String, expected: [Int], actual: [Int])
    case unknownModule(path: String, name: String)
    case unknownAdapter(name: String, loaded: [String])
    case unsupported(String)

    public var description: String {
        switch self {
        case .notFound(let p): return "\(p): no adapter here (expected adapter_config.json and adapter_model.safetensors, as PEFT saves them)"
        case .invalidConfig(let p, let r): return "\(p): invalid adapter config: \(r)"
        case .missingTensor(let p, let n): return "\(p): tensor '\(n)' is missing; was the adapter saved completely?"
        case .badShape(let p, let n, let e, let a):
            return "\(p): '\(n)' has shape \(a) but the base model needs \(e); was this adapter trained on another model?"
        case .unknownModule(let p, let n): return "\(p): '\(n)' names no linear layer of this model; was this adapter trained on another model?"
        case .unknownAdapter(let n, let loaded): return "no adapter named '\(n)' is loaded (loaded: \(loaded.joined(separator: ", ")))"
        case .unsupported(let what): return "unsupported adapter setting: \(what)"
        }
    }
}
