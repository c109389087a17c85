import FinchCore
import FinchLoRA
@testable import FinchModels

extension DecoderModel {
    /// Attaches an all-linear LoRA adapter (rank `r`, alpha 2r, no dropout, A seeded by 3) whose B
    /// is drawn from 0.01·N(0, 1) (seed 11) instead of zeros, so that every gradient is non-trivial;
    /// gradients cleared. Two models given the same call hold the same adapter.
    func attachRandomizedAdapter(r: Int, name: String) throws {
        var config = AdapterConfig(r: r, loraAlpha: Double(2 * r), targetModules: .allLinear)
        config.loraDropout = 0
        try createAdapter(config: config, name: name, seed: 3)
        var rng = SeededRandom(seed: 11)
        for p in trainableParameters() where p.name.contains("lora_B") {
            for i in 0..<p.value.count { p.value[i] = 0.01 * rng.nextGaussian() }
        }
        adapterParametersChanged()
        zeroGradients()
    }
}
