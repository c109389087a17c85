import FinchFormats
import Foundation

/// The mixture-of-experts keys of a Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE `config.json`: how many experts,
/// how many per token, their size, the shared expert's (Qwen2-MoE), which layers are sparse
/// (`decoder_sparse_step`, `mlp_only_layers`), the router's options, and the load-balancing loss.
/// Defaults are each family's, given by the caller.
struct ExpertsConfig: Decodable, Equatable {
    var numExperts: Int?
    /// Mixtral's name for it, and what transformers 5 writes for Qwen3-MoE's `num_experts` (an alias).
    var numLocalExperts: Int?
    var numExpertsPerTok: Int?
    var moeIntermediateSize: Int?
    var sharedExpertIntermediateSize: Int?
    var normTopkProb: Bool?
    var decoderSparseStep: Int?
    var mlpOnlyLayers: [Int]?
    var outputRouterLogits: Bool?
    var routerAuxLossCoef: Double?
    var routerJitterNoise: Double?

    enum CodingKeys: String, CodingKey {
        case numExperts = "num_experts", numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok", moeIntermediateSize = "moe_intermediate_size"
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size", normTopkProb = "norm_topk_prob"
        case decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
        case outputRouterLogits = "output_router_logits", routerAuxLossCoef = "router_aux_loss_coef"
        case routerJitterNoise = "router_jitter_noise"
    }
}

/// A family's mixture of experts as read (`ExpertsConfig` with the family's defaults applied and checked).
public struct ExpertsSettings: Sendable, Equatable {
    public var numExperts: Int
    public var numExpertsPerTok: Int
    public var expertSize: Int
    public var sharedExpertSize: Int?
    public var normTopkProb: Bool
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    public var outputRouterLogits: Bool
    public var routerAuxLossCoef: Double

    /// Reads the keys with the family's defaults; `sparseLayerKeys`: the family has
    /// `decoder_sparse_step` / `mlp_only_layers` (Qwen-MoE), else every layer is sparse (OLMoE).
    init(json data: Data, path: String, layers: Int, defaults: ExpertsSettings, sparseLayerKeys: Bool) throws {
        let e = try LlamaConfig.decode(ExpertsConfig.self, from: data, path: path)
        if let a = e.numExperts, let b = e.numLocalExperts, a != b {
            throw ModelError.invalidConfig(path: path, reason: "num_experts \(a) and num_local_experts \(b) disagree (they name one number)")
        }
        numExperts = e.numExperts ?? e.numLocalExperts ?? defaults.numExperts
        numExpertsPerTok = e.numExpertsPerTok ?? defaults.numExpertsPerTok
        expertSize = e.moeIntermediateSize ?? defaults.expertSize
        sharedExpertSize = defaults.sharedExpertSize == nil ? nil : (e.sharedExpertIntermediateSize ?? defaults.sharedExpertSize)
        normTopkProb = e.normTopkProb ?? defaults.normTopkProb
        decoderSparseStep = e.decoderSparseStep ?? defaults.decoderSparseStep
        mlpOnlyLayers = e.mlpOnlyLayers ?? defaults.mlpOnlyLayers
        outputRouterLogits = e.outputRouterLogits ?? defaults.outputRouterLogits
        routerAuxLossCoef = e.routerAuxLossCoef ?? defaults.routerAuxLossCoef
        guard numExperts >= 1, numExpertsPerTok >= 1, numExpertsPerTok <= numExperts else {
            throw ModelError.invalidConfig(path: path, reason: "num_experts_per_tok \(numExpertsPerTok) must be in 1 ... num_experts \(numExperts)")
        }
        guard expertSize >= 1, (sharedExpertSize ?? 1) >= 1 else {
            throw ModelError.invalidConfig(path: path, reason: "moe_intermediate_size and shared_expert_intermediate_size must be positive")
        }
        guard decoderSparseStep >= 1 else {
            throw ModelError.invalidConfig(path: path, reason: "decoder_sparse_step must be at least 1 (it is \(decoderSparseStep))")
        }
        if let bad = mlpOnlyLayers.first(where: { $0 < 0 || $0 >= layers }) {
            throw ModelError.invalidConfig(path: path, reason: "mlp_only_layers names layer \(bad) of \(layers)")
        }
        if !sparseLayerKeys, decoderSparseStep != 1 || !mlpOnlyLayers.isEmpty {
            throw ModelError.unsupportedOption(path: path, key: "decoder_sparse_step / mlp_only_layers", value: "set",
                                               supported: "absent (every layer of this family has experts)")
        }
        if let j = e.routerJitterNoise, j != 0 {
            throw ModelError.unsupportedOption(path: path, key: "router_jitter_noise", value: "\(j)",
                                               supported: "0 (Finch does not jitter the router's input in training)")
        }
    }

    public init(numExperts: Int, numExpertsPerTok: Int, expertSize: Int, sharedExpertSize: Int? = nil, normTopkProb: Bool,
                routerAuxLossCoef: Double) {
        self.numExperts = numExperts; self.numExpertsPerTok = numExpertsPerTok; self.expertSize = expertSize
        self.sharedExpertSize = sharedExpertSize; self.normTopkProb = normTopkProb; decoderSparseStep = 1; mlpOnlyLayers = []
        outputRouterLogits = false; self.routerAuxLossCoef = routerAuxLossCoef
    }

    /// llama.cpp's expert keys of architecture `arch`: `expert_count` and `expert_used_count`, and where the
    /// architecture has them `expert_feed_forward_length` (else `expertSize`) and `expert_shared_feed_forward_length`.
    /// `normalized`: whether the architecture renormalizes the chosen experts' weights (fixed per architecture).
    init(gguf: GGUFFile, arch: String, expertSize: Int?, shared: Bool, normalized: Bool) throws {
        let count = try gguf.requiredInt("\(arch).expert_count"), used = try gguf.requiredInt("\(arch).expert_used_count")
        guard count >= 1, used >= 1, used <= count else {
            throw ModelError.invalidConfig(path: gguf.path, reason: "\(arch).expert_used_count \(used) must be in 1 ... \(arch).expert_count \(count)")
        }
        let size = try expertSize ?? gguf.requiredInt("\(arch).expert_feed_forward_length")
        self.init(numExperts: count, numExpertsPerTok: used, expertSize: size,
                  sharedExpertSize: shared ? try gguf.requiredInt("\(arch).expert_shared_feed_forward_length") : nil,
                  normTopkProb: normalized, routerAuxLossCoef: 0.001)
    }

    /// The expert keys an export to llama.cpp's `arch` writes (see `init(gguf:…)`); `sizeKey`: the architecture
    /// reads the experts' width from `expert_feed_forward_length` (not `feed_forward_length`).
    func ggufKeys(arch: String, sizeKey: Bool) -> [(key: String, value: GGUFValue)] {
        var m: [(key: String, value: GGUFValue)] = [("\(arch).expert_count", .uint32(UInt32(numExperts))),
                                                    ("\(arch).expert_used_count", .uint32(UInt32(numExpertsPerTok)))]
        if sizeKey { m.append(("\(arch).expert_feed_forward_length", .uint32(UInt32(expertSize)))) }
        if let s = sharedExpertSize { m.append(("\(arch).expert_shared_feed_forward_length", .uint32(UInt32(s)))) }
        return m
    }

    /// The spec's mixture of experts for `layers` layers: a layer keeps a dense MLP when `mlp_only_layers`
    /// names it or (i + 1) is no multiple of `decoder_sparse_step`, as transformers' Qwen-MoE decides.
    func spec(layers: Int) -> DecoderSpec.MixtureOfExperts {
        var m = DecoderSpec.MixtureOfExperts(experts: numExperts, topK: numExpertsPerTok, normalize: normTopkProb, expertSize: expertSize)
        m.sharedExpertSize = sharedExpertSize
        m.denseLayers = Set((0..<layers).filter { mlpOnlyLayers.contains($0) || ($0 + 1) % decoderSparseStep != 0 })
        if outputRouterLogits { m.auxLossCoef = Float(routerAuxLossCoef) }
        return m
    }

    /// The keys as an export writes them.
    func json(sparseLayerKeys: Bool) -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = [
            ("num_experts", .int(numExperts)), ("num_experts_per_tok", .int(numExpertsPerTok)),
            ("moe_intermediate_size", .int(expertSize)), ("norm_topk_prob", .bool(normTopkProb)),
            ("output_router_logits", .bool(outputRouterLogits)), ("router_aux_loss_coef", .double(routerAuxLossCoef)),
        ]
        if let s = sharedExpertSize { out.append(("shared_expert_intermediate_size", .int(s))) }
        if sparseLayerKeys {
            out += [("decoder_sparse_step", .int(decoderSparseStep)), ("mlp_only_layers", .array(mlpOnlyLayers.map { .int($0) }))]
        }
        return out
    }
}
