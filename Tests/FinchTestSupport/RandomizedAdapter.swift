import FinchCore
import FinchLoRA
import FinchModels

extension LoRAHost {
    /// Creates adapter `name` from `config` (A drawn with `seed`) and replaces its zero B with
    /// `bScale`·N(0, 1) drawn from `bSeed`, so that every gradient is non-trivial; gradients cleared.
    /// Two models given the same call hold the same adapter.
    public func attachRandomizedAdapter(config: AdapterConfig, name: String = "default", seed: UInt64,
                                        bScale: Float, bSeed: UInt64) throws {
        try createAdapter(config: config, name: name, seed: seed)
        var rng = SeededRandom(seed: bSeed)
        for p in trainableParameters() where p.name.contains("lora_B") {
            for i in 0..<p.value.count { p.value[i] = bScale * rng.nextGaussian() }
        }
        adapterParametersChanged()
        zeroGradients()
    }

    /// An all-linear adapter of rank `r` (alpha 2r, no dropout, A seeded by 3), B from 0.01·N(0, 1) (seed 11).
    public func attachRandomizedAdapter(r: Int, name: String) throws {
        var config = AdapterConfig(r: r, loraAlpha: Double(2 * r), targetModules: .allLinear)
        config.loraDropout = 0
        try attachRandomizedAdapter(config: config, name: name, seed: 3, bScale: 0.01, bSeed: 11)
    }
}
