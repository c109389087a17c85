/// A token matched whole in the input before pre-tokenization (HF `AddedToken`), such as
/// `<|im_start|>`. Special tokens are the ones `decode(skipSpecialTokens: true)` drops.
public struct AddedToken: Sendable, Equatable {
    /// The token's id.
    public var id: Int
    /// The exact text matched in the input.
    public var content: String
    /// Dropped by `decode(skipSpecialTokens: true)`; matched even when `normalized` is false.
    public var special: Bool
    /// Also swallow whitespace on the left of the match.
    public var lstrip: Bool
    /// Also swallow whitespace on the right of the match.
    public var rstrip: Bool
    /// Only match when not inside a word.
    public var singleWord: Bool
    /// Match against normalized text (true) or the raw input (false).
    public var normalized: Bool

    /// `normalized` defaults to `!special`, as in HF.
    public init(id: Int, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool? = nil) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized ?? !special
    }
}
