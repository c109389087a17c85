/// The model step of a tokenizer: a vocabulary and how one pre-tokenized word becomes ids
/// (byte-pair encoding, `BPEModel`, or SentencePiece's Unigram, `UnigramModel`).
protocol TokenModel: AnyObject, Sendable {
    /// Token text (exact bytes) → id.
    var vocab: [TokenText: Int32] { get }
    /// Id → token text (nil for ids the model does not define).
    var idToToken: [String?] { get }
    /// The unknown token, if the model has one.
    var unkToken: String? { get }
    /// Whether words arrive as raw bytes spelled with the byte-level alphabet.
    var byteLevel: Bool { get }
    /// Appends the ids of one pre-tokenized word (UTF-8 bytes) to `out`.
    func encodeWord(_ word: ArraySlice<UInt8>, into out: inout [Int32])
}

extension TokenModel {
    func token(for id: Int) -> String? {
        id >= 0 && id < idToToken.count ? idToToken[id] : nil
    }
}
