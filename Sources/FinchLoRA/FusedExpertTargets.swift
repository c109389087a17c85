import FinchFormats

// Dimension letters: E experts, R rank, C hidden size, F an expert's intermediate size.

/// How PEFT's LoRA on transformers 5's fused expert tensors (`target_parameters`: `mlp.experts.gate_up_proj`
/// [E, 2F, C] and `mlp.experts.down_proj` [E, C, F], each a `ParamWrapper` with one A [R·E, in] and one
/// B [out, R·E] for all experts) maps onto a model that holds each expert's gate, up and down as its own
/// linear. PEFT's expert e uses A's rows e·R ..< (e + 1)·R and B's columns j·E + e (j < R): ΔW_e = s · B_e A_e;
/// gate_up's A is shared by gate (B's first F rows) and up (the next F), so expert e's gate and up start
/// from the same A. Two parameters of one module are saved as `experts.base_layer.lora_*` (the first wrapped)
/// and `experts.lora_*`; which is which is told by their shapes.
public struct FusedExpertTargets: Sendable {
    public struct Block: Sendable {
        public var experts: Int, hidden: Int, size: Int
        /// The model's module names of each expert's gate, up and down.
        public var gate: [String], up: [String], down: [String]
        public init(experts: Int, hidden: Int, size: Int, gate: [String], up: [String], down: [String]) {
            self.experts = experts; self.hidden = hidden; self.size = size; self.gate = gate; self.up = up; self.down = down
        }
    }
    /// PEFT's module path of each layer's fused experts (`model.layers.3.mlp.experts`).
    public var blocks: [String: Block]
    /// Module paths PEFT (transformers 5) uses that the model names otherwise (Mixtral's router
    /// `model.layers.3.mlp.gate` is `model.layers.3.block_sparse_moe.gate` in the per-expert layout).
    public var aliases: [String: String]
    public init(blocks: [String: Block], aliases: [String: String]) { self.blocks = blocks; self.aliases = aliases }

    /// Splits the factors of one fused parameter into per-expert modules: `a` [R·E, in], `b` [out, R·E];
    /// `rows` partitions B's out rows among the targets (gate_up: gate then up; down: one).
    static func split(a: [Float], b: [Float], rank r: Int, experts e: Int, inFeatures i: Int,
                      rows: [(name: String, count: Int)]) -> [(name: String, expert: Int, a: [Float], b: [Float])] {
        let out = rows.reduce(0) { $0 + $1.count }
        var result: [(String, Int, [Float], [Float])] = []
        for x in 0..<e {
            let ax = Array(a[(x * r * i)..<((x + 1) * r * i)])
            var first = 0
            for (name, count) in rows {
                var bx = [Float](repeating: 0, count: count * r)
                for o in 0..<count { for j in 0..<r { bx[o * r + j] = b[(first + o) * (r * e) + j * e + x] } }
                result.append((name, x, ax, bx))
                first += count
            }
            precondition(first == out)
        }
        return result.map { (name: $0.0, expert: $0.1, a: $0.2, b: $0.3) }
    }
}
