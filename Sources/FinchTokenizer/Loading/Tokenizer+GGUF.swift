import FinchFormats

extension GGUFTokenizerData {
    /// Reads the `tokenizer.*` keys of GGUF metadata.
    /// - Throws: `TokenizerError.missingField` when `tokenizer.ggml.model` or the tokens are absent.
    public init(ggufMetadata m: [String: GGUFValue]) throws {
        guard let model = m["tokenizer.ggml.model"]?.stringValue else {
            throw TokenizerError.missingField(field: "tokenizer.ggml.model", source: "GGUF metadata")
        }
        guard let tokens = m["tokenizer.ggml.tokens"]?.stringArray else {
            throw TokenizerError.missingField(field: "tokenizer.ggml.tokens", source: "GGUF metadata")
        }
        self.init(model: model, pre: m["tokenizer.ggml.pre"]?.stringValue, tokens: tokens,
                  tokenTypes: m["tokenizer.ggml.token_type"]?.intArray, merges: m["tokenizer.ggml.merges"]?.stringArray,
                  bosTokenId: m["tokenizer.ggml.bos_token_id"]?.intValue,
                  eosTokenId: m["tokenizer.ggml.eos_token_id"]?.intValue,
                  unknownTokenId: m["tokenizer.ggml.unknown_token_id"]?.intValue,
                  paddingTokenId: m["tokenizer.ggml.padding_token_id"]?.intValue,
                  eotTokenId: m["tokenizer.ggml.eot_token_id"]?.intValue,
                  eomTokenId: m["tokenizer.ggml.eom_token_id"]?.intValue,
                  addBosToken: m["tokenizer.ggml.add_bos_token"]?.boolValue,
                  addEosToken: m["tokenizer.ggml.add_eos_token"]?.boolValue,
                  chatTemplate: m["tokenizer.chat_template"]?.stringValue)
        architecture = m["general.architecture"]?.stringValue
    }
}

extension Tokenizer {
    /// Builds the tokenizer described by GGUF metadata (see `init(ggufTokenizer:)`).
    public convenience init(ggufMetadata: [String: GGUFValue]) throws {
        try self.init(ggufTokenizer: GGUFTokenizerData(ggufMetadata: ggufMetadata))
    }

    /// Builds the tokenizer stored in a GGUF file's metadata.
    public convenience init(gguf: GGUFFile) throws {
        try self.init(ggufMetadata: gguf.metadata)
    }
}
