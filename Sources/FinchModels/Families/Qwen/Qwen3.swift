import FinchCore
import FinchFormats

/// Qwen3 dense models (`Qwen3ForCausalLM`): the LLaMA layout with an RMSNorm over each head of
/// q and k before the rotation, biases with `attention_bias`, optional sliding windows.
/// Its config reads like Qwen2's (`QwenConfig`).
extension ModelFamily {
    public static let qwen3 = ModelFamily(
        name: "qwen3", modelTypes: ["qwen3"], architectures: ["Qwen3ForCausalLM"], ggufArchitectures: ["qwen3"],
        readConfig: { data, path in try QwenConfig(json: data, path: path, family: .qwen3) },
        readGGUF: { try QwenConfig(gguf: $0, family: .qwen3) })
}
