/// A family's checkpoint names, declared once: Hugging Face module names (used to load, to find
/// LoRA targets, to merge and export) and llama.cpp's GGUF tensor names (used to load a GGUF).
///
/// A block weight is `<layerPrefix>.<i>.<module>.weight` (and `.bias`) in a Hugging Face
/// checkpoint and `blk.<i>.<gguf>.weight` in a GGUF file.
public struct DecoderNames: Sendable {
    /// `model.layers`.
    public var layerPrefix: String
    /// `model.embed_tokens`.
    public var embedding: String
    /// The learned position embedding (GPT-2's `transformer.wpe`), when the spec has one.
    public var positions: String? = nil
    /// Whether linear weights are stored [in, out] (GPT-2's Conv1D); they are transposed on load
    /// and back on export.
    public var linearsTransposed: Bool = false
    /// `model.norm`.
    public var finalNorm: String
    /// `lm_head`.
    public var head: String
    /// Module name of each block linear, relative to the block (`self_attn.q_proj`), and its GGUF name (`attn_q`).
    public var linears: [DecoderLinear: (hf: String, gguf: String)]
    /// Module name of each block norm (`input_layernorm`) and its GGUF name (`attn_norm`).
    public var norms: [DecoderNorm: (hf: String, gguf: String)]
    /// Tensors a checkpoint may hold that the model knowingly does not use (exact names).
    public var ignored: Set<String> = []
    /// The base model's prefix (`transformer` in `transformer.h.0…`): a checkpoint saved from the
    /// base model alone (the hub's `gpt2`) names its tensors without it, and loads all the same.
    public var basePrefix: String? = nil
    /// Whether llama.cpp stores q / k rows in its interleaved rotary order (its LLaMA converter
    /// permutes them; its Qwen and Gemma converters do not).
    public var ggufPermutesQK: Bool = false
    /// What llama.cpp's converter added to every norm weight (Gemma: 1); loading a GGUF subtracts
    /// it, as transformers does.
    public var ggufNormShift: Float = 0
    /// Whether the family's llama.cpp architecture requires an `output` tensor even when the head is tied to the
    /// embedding (qwen2moe, olmoe): an export writes the embedding again under that name.
    public var ggufRequiresOutput = false
    /// A mixture-of-experts MLP's names, relative to the block (`block_sparse_moe`, its router `gate`,
    /// expert `e`'s `experts.e.w1` / `w3` / `w2` for gate / up / down), when the family has one.
    public var moe: MoENames? = nil

    public struct MoENames: Sendable {
        public var block: String
        public var router: String
        public var experts: String
        public var gate: String, up: String, down: String
        /// The shared expert (its linears named as the experts') and its sigmoid gate (Qwen2-MoE).
        public var sharedExpert: String? = nil, sharedExpertGate: String? = nil
        /// Mixtral's per-expert checkpoint layout (transformers writes it so).
        public static let mixtral = MoENames(block: "block_sparse_moe", router: "gate", experts: "experts", gate: "w1", up: "w3", down: "w2")
        /// Qwen2-MoE's, Qwen3-MoE's and OLMoE's (`mlp.gate`, `mlp.experts.E.gate_proj` …; Qwen2-MoE's
        /// `mlp.shared_expert.gate_proj` … and `mlp.shared_expert_gate`).
        public static let qwen = MoENames(block: "mlp", router: "gate", experts: "experts", gate: "gate_proj", up: "up_proj", down: "down_proj")
        public static let qwen2 = MoENames(block: "mlp", router: "gate", experts: "experts", gate: "gate_proj", up: "up_proj", down: "down_proj",
                                           sharedExpert: "shared_expert", sharedExpertGate: "shared_expert_gate")

        func part(_ l: DecoderLinear) -> String { l == .gate ? gate : l == .up ? up : down }
    }

    /// Full module name of block `i`'s router (`model.layers.3.block_sparse_moe.gate`).
    public func router(layer i: Int) -> String { "\(layerPrefix).\(i).\(moe!.block).\(moe!.router)" }

    /// Full module name of block `i`'s expert `e` linear (`model.layers.3.block_sparse_moe.experts.5.w1`).
    public func expert(_ e: Int, _ l: DecoderLinear, layer i: Int) -> String {
        let m = moe!
        return "\(layerPrefix).\(i).\(m.block).\(m.experts).\(e).\(m.part(l))"
    }

    /// Full module name of block `i`'s shared-expert linear (`model.layers.3.mlp.shared_expert.gate_proj`).
    public func sharedExpert(_ l: DecoderLinear, layer i: Int) -> String {
        let m = moe!
        return "\(layerPrefix).\(i).\(m.block).\(m.sharedExpert!).\(m.part(l))"
    }

    /// Full module name of block `i`'s shared expert's gate (`model.layers.3.mlp.shared_expert_gate`).
    public func sharedExpertGate(layer i: Int) -> String { "\(layerPrefix).\(i).\(moe!.block).\(moe!.sharedExpertGate!)" }

    /// llama.cpp's names of block `i`'s 2-D MoE tensors: the router (`ffn_gate_inp`), the shared expert's
    /// linears (`ffn_gate_shexp` …) and its gate (`ffn_gate_inp_shexp`), by Hugging Face tensor name.
    func ggufExpertNames2D(spec: DecoderSpec, layer i: Int) -> [String: String] {
        guard let m = spec.moe(layer: i) else { return [:] }
        var map = ["\(router(layer: i)).weight": "blk.\(i).ffn_gate_inp.weight"]
        if m.sharedExpertSize != nil {
            for (l, g) in [(DecoderLinear.gate, "ffn_gate_shexp"), (.up, "ffn_up_shexp"), (.down, "ffn_down_shexp")] {
                map["\(sharedExpert(l, layer: i)).weight"] = "blk.\(i).\(g).weight"
            }
            map["\(sharedExpertGate(layer: i)).weight"] = "blk.\(i).ffn_gate_inp_shexp.weight"
        }
        return map
    }

    /// Whether llama.cpp stores the linear `ggufName` [1, C] as a vector [C] (a shared expert's gate, as its
    /// converter writes it): an export writes it so, loading reads it back as [1, C].
    static func ggufStoresAsVector(_ ggufName: String) -> Bool { ggufName.hasSuffix(".ffn_gate_inp_shexp.weight") }

    /// Each expert's gate / up / down weight (Hugging Face name) → llama.cpp's 3-D tensor holding every
    /// expert's (`blk.<i>.ffn_gate_exps.weight`, ggml [in, out, E]) and the expert's index in it.
    public func ggufExpertSlices(for spec: DecoderSpec) -> [String: (gguf: String, expert: Int)] {
        var map: [String: (gguf: String, expert: Int)] = [:]
        for i in 0..<spec.numLayers {
            guard let m = spec.moe(layer: i) else { continue }
            for e in 0..<m.experts {
                for (l, g) in [(DecoderLinear.gate, "ffn_gate_exps"), (.up, "ffn_up_exps"), (.down, "ffn_down_exps")] {
                    map["\(expert(e, l, layer: i)).weight"] = ("blk.\(i).\(g).weight", e)
                }
            }
        }
        return map
    }

    /// Block `i`'s linears inside its mixture of experts (none where it has a dense MLP), by full module
    /// name with their (out, in) features: the router, each expert's gate, up and down, the shared
    /// expert's and its gate.
    public func expertModules(spec: DecoderSpec, layer i: Int) -> [(name: String, shape: (out: Int, in: Int))] {
        guard let m = spec.moe(layer: i) else { return [] }
        let c = spec.hiddenSize, f = m.expertSize
        var out = [(router(layer: i), (m.experts, c))]
        for e in 0..<m.experts {
            out += [(expert(e, .gate, layer: i), (f, c)), (expert(e, .up, layer: i), (f, c)), (expert(e, .down, layer: i), (c, f))]
        }
        if let s = m.sharedExpertSize {
            out += [(sharedExpert(.gate, layer: i), (s, c)), (sharedExpert(.up, layer: i), (s, c)), (sharedExpert(.down, layer: i), (c, s)),
                    (sharedExpertGate(layer: i), (1, c))]
        }
        return out.map { (name: $0.0, shape: (out: $0.1.0, in: $0.1.1)) }
    }

    /// The names of LLaMA and of the families that kept its layout (Mistral, Qwen2, Qwen3).
    public static let llamaLayout = DecoderNames(
        layerPrefix: "model.layers", embedding: "model.embed_tokens", finalNorm: "model.norm", head: "lm_head",
        linears: [.q: ("self_attn.q_proj", "attn_q"), .k: ("self_attn.k_proj", "attn_k"),
                  .v: ("self_attn.v_proj", "attn_v"), .o: ("self_attn.o_proj", "attn_output"),
                  .gate: ("mlp.gate_proj", "ffn_gate"), .up: ("mlp.up_proj", "ffn_up"),
                  .down: ("mlp.down_proj", "ffn_down")],
        norms: [.attention: ("input_layernorm", "attn_norm"), .mlp: ("post_attention_layernorm", "ffn_norm"),
                .q: ("self_attn.q_norm", "attn_q_norm"), .k: ("self_attn.k_norm", "attn_k_norm")])

    /// Full module name of block `i`'s linear `l` (`model.layers.3.self_attn.q_proj`).
    public func module(_ l: DecoderLinear, layer i: Int) -> String { "\(layerPrefix).\(i).\(linears[l]!.hf)" }

    /// Full module name of block `i`'s norm `n`.
    public func module(_ n: DecoderNorm, layer i: Int) -> String { "\(layerPrefix).\(i).\(norms[n]!.hf)" }

    /// Hugging Face names of the q / k weights and biases whose rows llama.cpp's converter
    /// interleaves (see `ggufPermutesQK`) → their head count; empty when it does not.
    public func ggufPermutedHeads(for spec: DecoderSpec) -> [String: Int] {
        guard ggufPermutesQK else { return [:] }
        var heads: [String: Int] = [:]
        for i in 0..<spec.numLayers {
            for (l, n) in [(DecoderLinear.q, spec.numHeads), (.k, spec.numKVHeads)] where linears[l] != nil {
                for part in ["weight", "bias"] { heads["\(module(l, layer: i)).\(part)"] = n }
            }
        }
        return heads
    }

    /// Hugging Face tensor name → GGUF tensor name for every weight of a model with `spec`'s
    /// layers and parts (llama.cpp: `token_embd`, `output_norm`, `output`, `blk.<i>.<name>`).
    public func ggufNames(for spec: DecoderSpec) -> [String: String] {
        var map = ["\(embedding).weight": "token_embd.weight", "\(finalNorm).weight": "output_norm.weight",
                   "\(finalNorm).bias": "output_norm.bias", "\(head).weight": "output.weight"]
        if let p = positions { map["\(p).weight"] = "position_embd.weight" }
        for i in 0..<spec.numLayers {
            for l in spec.linears(layer: i) {
                map["\(module(l, layer: i)).weight"] = "blk.\(i).\(linears[l]!.gguf).weight"
                map["\(module(l, layer: i)).bias"] = "blk.\(i).\(linears[l]!.gguf).bias"
            }
            map.merge(ggufExpertNames2D(spec: spec, layer: i)) { a, _ in a }
            for n in spec.norms {
                map["\(module(n, layer: i)).weight"] = "blk.\(i).\(norms[n]!.gguf).weight"
                map["\(module(n, layer: i)).bias"] = "blk.\(i).\(norms[n]!.gguf).bias"
            }
        }
        return map
    }
}
