import FinchCore
import Foundation

/// New adapters, initialized as PEFT initializes them.
extension LoRAAdapter {
    /// A fresh adapter for every linear layer `config` targets.
    ///
    /// PEFT's `init_lora_weights`: `true` (its default) draws A [R, I] from kaiming-uniform with
    /// a = √5, i.e. U(−1/√I, 1/√I), and sets B = 0, so the adapter starts as a no-op;
    /// `"gaussian"` draws A from N(0, 1/R) and sets B = 0. DoRA's magnitude starts as the base weight's row norms (‖W‖ per output,
    /// from `baseValues`). Values come from one generator seeded with `seed`,
    /// consumed module by module in sorted name order, so the same seed gives the same adapter.
    /// `"olora"` and `"pissa"` take A and B from a factorization of the base weight
    /// (`DecompositionInit`) and return the residual base each module's weight must become
    /// (`residuals`; the caller writes them), the modules keeping their initial factors (`initial`).
    /// `"loftq"` quantizes each module's base with `quantize` (values [O, I], out, in → the quantized
    /// weight) in `loftq.iterations` rounds against an SVD of what the quantization lost
    /// (`DecompositionInit.loftq`) and returns the quantized base each module must take (`bases`).
    /// `linears`: every linear layer of the model (module name → (out, in)); `baseValues`: a module's
    /// base weight [O, I] as f32.
    public static func initialized(config: AdapterConfig, linears: [String: (out: Int, in: Int)], seed: UInt64,
                                   quantize: ((_ values: [Float], _ out: Int, _ in: Int) throws -> LinearWeight)? = nil,
                                   baseValues: (String) -> [Float]) throws
        -> (adapter: LoRAAdapter, residuals: [String: [Float]], bases: [String: LinearWeight]) {
        try config.validate(path: "adapter config")
        let method = config.initLoRAWeights.lowercased()
        let decomposed = Self.isDecompositionInit(method)
        if (decomposed || method == "loftq") && config.useDoRA {
            throw AdapterError.unsupported("init_lora_weights \(method) with use_dora: start DoRA from true or gaussian")
        }
        var rng = SeededRandom(seed: seed)
        var modules: [String: LoRAModule] = [:], residuals: [String: [Float]] = [:], bases: [String: LinearWeight] = [:]
        for name in linears.keys.sorted() where config.targets(name) {
            let (o, i) = linears[name]!
            let r = config.rank(for: name), scaling = config.scaling(for: name)
            var a = Buffer<Float>(count: r * i), b = Buffer<Float>(count: o * r)
            switch method {
            case "true":
                let bound = 1 / Float(i).squareRoot()
                for e in 0..<a.count { a[e] = (2 * rng.nextUnit() - 1) * bound }
            case "gaussian":
                for e in 0..<a.count { a[e] = rng.nextGaussian() / Float(r) }
            case "eva":
                break   // A is the caller's (the leading components of the layer's inputs: LoRAHost.eva), B zero
            case _ where decomposed:
                let w = baseValues(name)
                let d = method == "olora"
                    ? try DecompositionInit.olora(weight: w, out: o, in: i, rank: r, scaling: scaling)
                    : try DecompositionInit.pissa(weight: w, out: o, in: i, rank: r, scaling: scaling,
                                                  iterations: Int(method.dropFirst("pissa_niter_".count)), random: &rng)
                a = Buffer(d.a); b = Buffer(d.b)
                residuals[name] = d.residual
            case "loftq":
                guard let quantize else {
                    throw AdapterError.unsupported("init_lora_weights loftq quantizes the base weights, and no quantization was given (--quantize nf4 or int8)")
                }
                let d = try DecompositionInit.loftq(weight: baseValues(name), out: o, in: i, rank: r, scaling: scaling,
                                                    iterations: config.loftq?.iterations ?? 1) { try quantize($0, o, i) }
                a = Buffer(d.a); b = Buffer(d.b)
                bases[name] = d.base
            case let other:
                throw AdapterError.unsupported("init_lora_weights '\(other)' (Finch initializes new adapters with true, gaussian, olora, pissa, pissa_niter_K, loftq or eva)")
            }
            var magnitude: Buffer<Float>?
            if config.useDoRA {
                let w = baseValues(name)
                magnitude = Buffer((0..<o).map { row in
                    var ss = 0.0
                    for c in 0..<i { ss += Double(w[row * i + c]) * Double(w[row * i + c]) }
                    return Float(ss.squareRoot())
                })
            }
            let m = LoRAModule(rank: r, scaling: Float(scaling), a: a, b: b, magnitude: magnitude, inFeatures: i, outFeatures: o)
            m.dropout = Float(config.loraDropout)
            if decomposed { m.initial = (a.array, b.array) }
            modules[name] = m
        }
        if modules.isEmpty {
            throw AdapterError.invalidConfig(path: "adapter config", reason: "target_modules matches no linear layer of this model")
        }
        return (LoRAAdapter(config: config, modules: modules), residuals, bases)
    }

    /// Whether an `init_lora_weights` value moves part of the base weight into the adapter: olora,
    /// pissa, pissa_niter_K.
    public static func isDecompositionInit(_ method: String) -> Bool {
        let m = method.lowercased()
        return m == "olora" || m == "pissa" || (m.hasPrefix("pissa_niter_") && Int(m.dropFirst("pissa_niter_".count)) != nil)
    }
}
