import Foundation

extension Tokenizer {
    /// Renders `messages` with the tokenizer's chat template, passing its special tokens
    /// (`bos_token`, `eos_token`, `unk_token`, `pad_token`) as transformers does; `variables`
    /// override or add to them.
    /// - Throws: `TemplateError` from the template, or `TokenizerError.noChatTemplate` when the tokenizer has none.
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool, tools: [TemplateValue]? = nil,
                                  variables: [String: TemplateValue] = [:]) throws -> String {
        guard let source = chatTemplate else {
            throw TokenizerError.noChatTemplate
        }
        let template = try cachedTemplate(source)
        var vars: [String: TemplateValue] = specialTokensMap.mapValues { .string($0) }
        for (k, v) in variables { vars[k] = v }
        return try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, tools: tools, variables: vars)
    }

    /// `applyChatTemplate` followed by `encode` without added special tokens (transformers'
    /// `apply_chat_template(tokenize=True)`).
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool, tools: [TemplateValue]? = nil,
                           variables: [String: TemplateValue] = [:]) throws -> [Int] {
        encode(try applyChatTemplate(messages, addGenerationPrompt: addGenerationPrompt, tools: tools,
                                     variables: variables))
    }

    /// One question as a chat prompt: the optional system message, the user's message, and the
    /// template's generation prompt (what `finch generate --chat` and prompt datasets send).
    public func applyChatTemplate(user: String, system: String? = nil) throws -> String {
        var messages: [ChatMessage] = []
        if let system { messages.append(.system(system)) }
        messages.append(ChatMessage(role: "user", content: user))
        return try applyChatTemplate(messages, addGenerationPrompt: true)
    }

    private func cachedTemplate(_ source: String) throws -> ChatTemplate {
        try templateCache.get(source)
    }
}

/// Parses a tokenizer's template once.
final class TemplateCache: @unchecked Sendable {
    private var parsed: (String, ChatTemplate)?
    private let lock = NSLock()

    func get(_ source: String) throws -> ChatTemplate {
        lock.lock(); defer { lock.unlock() }
        if let p = parsed, p.0 == source { return p.1 }
        let t = try ChatTemplate(source)
        parsed = (source, t)
        return t
    }
}
