import FinchFormats

/// A decoder family's config, read from `config.json` or GGUF metadata and validated: what
/// `DecoderModel` is built from, and what an export writes back.
public protocol DecoderConfig: Sendable {
    /// The blocks' sizes and parts.
    var decoderSpec: DecoderSpec { get }
    /// The checkpoint's names.
    var names: DecoderNames { get }
    /// `vocab_size`: rows of the embedding and the LM head (set when the vocabulary grows,
    /// `DecoderModel.growVocabulary`).
    var vocabSize: Int { get set }
    /// PEFT's default `target_modules` for the family.
    var defaultTargetModules: [String] { get }
    /// `config.json` as transformers writes it for this family (keys sorted).
    func huggingFaceConfigJSON(torchDType: String, tieWordEmbeddings: Bool) -> JSONValue
    /// `generation_config.json`.
    func generationConfigJSON() -> JSONValue
    /// llama.cpp's architecture name and `<arch>.*` hyperparameters for GGUF export; what llama.cpp
    /// would compute differently is refused, naming why (each family in its folder).
    func ggufHyperparameters(path: String) throws -> (architecture: String, metadata: [(key: String, value: GGUFValue)])
    /// What training this model does differently from transformers' training mode, said to the
    /// user when a run starts (e.g. dropout inside the base model, which Finch does not apply).
    var trainingCaveats: [String] { get }
}

extension DecoderConfig {
    public var trainingCaveats: [String] { [] }
}
