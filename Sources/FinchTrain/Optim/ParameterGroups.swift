/// A parameter's learning rate and weight decay within its optimizer (PyTorch's param groups): the
/// scheduled learning rate times `lrFactor`, and `weightDecay` in place of the optimizer's own.
public struct ParameterGroup: Sendable, Equatable {
    public var lrFactor: Double
    public var weightDecay: Double
    public init(lrFactor: Double, weightDecay: Double) { self.lrFactor = lrFactor; self.weightDecay = weightDecay }
}

/// LoRA+ (Hayou et al., 2024) as PEFT's `create_loraplus_optimizer` groups an adapter's tensors:
/// B (`lora_B`) and one-dimensional tensors (DoRA's magnitude, biases) at `lrRatio` × the learning
/// rate, embedding adapters (`lora_embedding_A` / `_B`) at `embeddingLearningRate`, everything else
/// (A) at the learning rate; every group's weight decay `weightDecay`, biases' 0. The scheduler scales
/// every group's rate alike (its factor is kept), as PyTorch's schedulers scale each group's initial one.
public struct LoRAPlus: Sendable, Equatable {
    /// ηB / ηA (`loraplus_lr_ratio`).
    public var lrRatio: Double
    /// The embedding adapters' learning rate (`loraplus_lr_embedding`, PEFT's default 1e-6).
    public var embeddingLearningRate: Double
    /// The groups' weight decay (`loraplus_weight_decay`).
    public var weightDecay: Double

    public init(lrRatio: Double, embeddingLearningRate: Double = 1e-6, weightDecay: Double = 0) {
        self.lrRatio = lrRatio; self.embeddingLearningRate = embeddingLearningRate; self.weightDecay = weightDecay
    }

    /// The group of each tensor named as PEFT names them (`…lora_A.weight`, `…lora_B.weight`,
    /// `…lora_magnitude_vector`, `…lora_embedding_A`), for a run at `learningRate`.
    public func groups(names: [String], learningRate: Double) -> [ParameterGroup] {
        names.map { name in
            let parts = name.split(separator: ".")
            if parts.contains(where: { $0 == "lora_embedding_A" || $0 == "lora_embedding_B" }) {
                return ParameterGroup(lrFactor: learningRate > 0 ? embeddingLearningRate / learningRate : 0, weightDecay: weightDecay)
            }
            let isBias = name.contains("bias")
            if parts.contains("lora_B") || parts.contains("lora_magnitude_vector") || isBias {
                return ParameterGroup(lrFactor: lrRatio, weightDecay: isBias ? 0 : weightDecay)
            }
            return ParameterGroup(lrFactor: 1, weightDecay: weightDecay)
        }
    }
}
