import FinchCore
import Foundation

/// New adapters, initialized as PEFT initializes them.
extension LoRAAdapter {
    /// A fresh adapter for every linear layer `config` targets.
    ///
    /// PEFT's `init_lora_weights`: `true` (its default) draws A [R, I] from kaiming-uniform with
    /// a = √5, i.e. U(−1/√I, 1/√I), and sets B = 0, so the adapter starts as a no-op;
    /// `"gaussian"` draws A from N(0, 1/R) and sets B = 0. DoRA's magnitude starts as the base weight's row norms (‖W‖ per output),
    /// which `baseRowNorms` provides. Values come from one generator seeded with `seed`,
    /// consumed module by module in sorted name order, so the same seed gives the same adapter.
    /// `linears`: every linear layer of the model (module name → (out, in)); `outputHead`: the
    /// name of the LM head, which "all-linear" excludes.
    public static func initialized(config: AdapterConfig, linears: [String: (out: Int, in: Int)], seed: UInt64,
                                   baseRowNorms: (String) -> [Float]) throws -> LoRAAdapter {
        try config.validate(path: "adapter config")
        var rng = SeededRandom(seed: seed)
        var modules: [String: LoRAModule] = [:]
        for name in linears.keys.sorted() where config.targets(name) {
            let (o, i) = linears[name]!
            let r = config.rank(for: name)
            let a = Buffer<Float>(count: r * i), b = Buffer<Float>(count: o * r)
            switch config.initLoRAWeights.lowercased() {
            case "true":
                let bound = 1 / Float(i).squareRoot()
                for e in 0..<a.count { a[e] = (2 * rng.nextUnit() - 1) * bound }
            case "gaussian":
                for e in 0..<a.count { a[e] = rng.nextGaussian() / Float(r) }
            case let other:
                throw AdapterError.unsupported("init_lora_weights '\(other)' (Finch initializes new adapters with true or gaussian)")
            }
            var magnitude: Buffer<Float>?
            if config.useDoRA {
                let norms = baseRowNorms(name)
                precondition(norms.count == o)
                magnitude = Buffer(norms)
            }
            let m = LoRAModule(rank: r, scaling: Float(config.scaling(for: name)), a: a, b: b, magnitude: magnitude,
                               inFeatures: i, outFeatures: o)
            m.dropout = Float(config.loraDropout)
            modules[name] = m
        }
        if modules.isEmpty {
            throw AdapterError.invalidConfig(path: "adapter config", reason: "target_modules matches no linear layer of this model")
        }
        return LoRAAdapter(config: config, modules: modules)
    }
}
