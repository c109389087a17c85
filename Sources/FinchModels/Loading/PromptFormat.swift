import FinchTokenizer

/// How a model's prompts become tokens: the one place that knows what a kind of model reads.
/// A decoder-only model continues its prompt; an encoder-decoder model (T5) reads the prompt as
/// its source and answers from the decoder's start id. A chat becomes a prompt through the chat
/// template (the tokenizer's, or one given with `--chat-template`); a model without one refuses
/// chats by name.
public struct PromptFormat {
    public let kind: ModelKind
    public let tokenizer: Tokenizer
    let model: any LanguageModel

    /// A plain prompt (a decoder-only model's text to continue, an encoder-decoder model's
    /// source) with the tokenizer's special tokens (a BOS, T5's closing `</s>`), as transformers'
    /// tokenizer call adds them.
    public func tokens(prompt: String) -> [Int] {
        tokenizer.encode(prompt, addSpecialTokens: true)
    }

    /// A conversation rendered by the chat template (which writes its own special tokens), ending
    /// with the template's generation prompt when `addGenerationPrompt`.
    public func tokens(chat messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> [Int] {
        try tokenizer.encodeChat(messages, addGenerationPrompt: addGenerationPrompt)
    }

    /// One question as a chat prompt (an optional system message and the user's message).
    public func tokens(user: String, system: String? = nil) throws -> [Int] {
        var messages: [ChatMessage] = []
        if let system { messages.append(.system(system)) }
        messages.append(ChatMessage(role: "user", content: user))
        return try tokens(chat: messages)
    }

    /// lm-evaluation-harness' tokens of a (context, continuation) pair for log-likelihood scoring:
    /// for a decoder-only model the continuation is what tokenizing `context + continuation` adds
    /// past the context's tokens (no special tokens); an encoder-decoder model's context and
    /// continuation are tokenized apart, each with the tokenizer's special tokens (lm-eval's
    /// seq2seq models: the source and the target each end with `</s>`).
    public func scoringPair(context: String, continuation: String) -> (context: [Int], continuation: [Int]) {
        switch kind {
        case .decoderOnly:
            let ctx = tokenizer.encode(context)
            return (ctx, Array(tokenizer.encode(context + continuation).dropFirst(ctx.count)))
        case .encoderDecoder:
            return (tokenizer.encode(context, addSpecialTokens: true), tokenizer.encode(continuation, addSpecialTokens: true))
        }
    }

    /// What a self-check (merge, quantize, export) runs for a text: the prompt and the decoder
    /// tokens read after what `start` gives. A decoder-only model reads the prompt (with its
    /// special tokens, or the chat template's rendering); an encoder-decoder model encodes it and
    /// its decoder reads the text's tokens after the start id, so that every part of it is checked.
    public func selfCheck(_ text: String, chat: Bool) throws -> (prompt: [Int], then: [Int]) {
        let prompt = chat ? try tokens(chat: [.user(text)]) : tokens(prompt: text)
        switch kind {
        case .decoderOnly: return (prompt, [])
        case .encoderDecoder: return (prompt, tokenizer.encode(text))
        }
    }

    /// Whether generated text leaves special tokens out: transformers' text2text pipeline does
    /// for encoder-decoder models (T5's sentinels and padding); a decoder-only model's text is
    /// decoded as `tokenizer.decode` gives it.
    public var skipsSpecialTokensInOutput: Bool { kind == .encoderDecoder }

    /// The id an encoder-decoder model's decoder starts from, which training puts before each
    /// target; nil for a decoder-only model (training sequences are prompt + answer).
    public var decoderStartTokenId: Int? { (model as? any Seq2SeqLM)?.decoderStartTokenId }
}
