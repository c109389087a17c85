/// One message of a conversation, as chat templates see it: `role`, `content` and any further
/// fields (`tool_calls`, `tool_call_id`, `name`, ...), in order.
public struct ChatMessage: Sendable, Equatable {
    /// "system", "user", "assistant", "tool", ...
    public var role: String
    /// Usually a string; a list of parts (`[{"type": "text", "text": ...}]`) for multimodal
    /// templates; nil when the message has no content (e.g. a pure tool call).
    public var content: TemplateValue?
    /// Further fields, in order.
    public var extra: [(key: String, value: TemplateValue)]

    /// A message with text content.
    public init(role: String, content: String) {
        self.role = role
        self.content = .string(content)
        self.extra = []
    }

    /// A message with any content and further fields.
    public init(role: String, content: TemplateValue?, extra: [(key: String, value: TemplateValue)] = []) {
        self.role = role
        self.content = content
        self.extra = extra
    }

    public static func == (a: ChatMessage, b: ChatMessage) -> Bool {
        a.role == b.role && a.content == b.content && a.extra.count == b.extra.count
            && zip(a.extra, b.extra).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// Shorthands for text messages of the usual roles.
    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: "assistant", content: text) }

    /// The message as the template sees it: `{"role": ..., "content": ..., <extra>...}`.
    public var templateValue: TemplateValue {
        var m: [(key: String, value: TemplateValue)] = [("role", .string(role))]
        if let content { m.append(("content", content)) }
        m += extra
        return .object(m)
    }
}
