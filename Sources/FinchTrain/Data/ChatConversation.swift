import FinchFormats
import FinchTokenizer

/// Renders a `chat` record with the tokenizer's chat template and finds the text of each
/// assistant message in it, so the loss can be taken on those spans only.
///
/// For the assistant message at index `i`, the template renders `messages[0..<i]` with the
/// generation prompt (where the reply starts) and `messages[0...i]` without it (where it
/// ends); both must be prefixes of the whole conversation's rendering, which holds for
/// templates that render each message independently of later ones (ChatML, Llama, Gemma,
/// ...). The span covers the reply and the template's end-of-turn text (ChatML's
/// `<|im_end|>`); whitespace the template writes after it (ChatML's newline) stays masked.
/// Like transformers' `apply_chat_template(tokenize=True)`, no BOS or EOS is added: the
/// template writes the special tokens it wants.
///
/// Records hold `{"messages": [{"role": …, "content": …, …}]}` (OpenAI / TRL style, further
/// message keys such as `name` or `tool_calls` are passed to the template) or ShareGPT's
/// `{"conversations": [{"from": "human"|"gpt"|"system", "value": …}]}`.
struct ChatConversation {
    var messages: [ChatMessage]

    /// Reads the messages of a record.
    init(record: DataRecord, path: String) throws(DataError) {
        let key = record.value["messages"] != nil ? "messages" : "conversations"
        guard let list = record.value[key] else {
            throw record.malformed(path, "missing key \"messages\"; the chat format needs "
                + "{\"messages\": [{\"role\": …, \"content\": …}]} (keys here: \(record.keys.joined(separator: ", ")))")
        }
        guard let items = list.arrayValue else {
            throw record.malformed(path, "key \"\(key)\" is \(list.kindName); the chat format needs an array of messages")
        }
        if items.isEmpty { throw record.malformed(path, "key \"\(key)\" is an empty array; a conversation needs messages") }
        var out: [ChatMessage] = []
        for (i, item) in items.enumerated() {
            guard let members = item.objectValue else {
                throw record.malformed(path, "\(key)[\(i)] is \(item.kindName); each message must be an object with \"role\" and \"content\"")
            }
            out.append(try Self.message(members, index: i, key: key, record: record, path: path))
        }
        messages = out
    }

    private static func message(_ members: [(key: String, value: JSONValue)], index i: Int, key: String,
                                record: DataRecord, path: String) throws(DataError) -> ChatMessage {
        let object = JSONValue.object(members)
        let shareGPT = object["role"] == nil && object["from"] != nil
        let roleKey = shareGPT ? "from" : "role", contentKey = shareGPT ? "value" : "content"
        guard let roleValue = object[roleKey] else {
            throw record.malformed(path, "\(key)[\(i)] has no \"role\"; each message needs \"role\" and \"content\"")
        }
        guard var role = roleValue.stringValue else {
            throw record.malformed(path, "\(key)[\(i)].\(roleKey) is \(roleValue.kindName); it must be a string such as \"user\" or \"assistant\"")
        }
        if shareGPT { role = ["human": "user", "gpt": "assistant"][role] ?? role }
        var content: TemplateValue? = nil
        if let c = object[contentKey] {
            if case .string(let s) = c { content = .string(s) } else if c.isNull { content = nil } else if shareGPT {
                throw record.malformed(path, "\(key)[\(i)].value is \(c.kindName); it must be a string")
            } else {
                content = templateValue(c)
            }
        } else if role != "assistant" {
            throw record.malformed(path, "\(key)[\(i)] has no \"\(contentKey)\"")
        }
        let extra = members.filter { $0.key != roleKey && $0.key != contentKey }
            .map { (key: $0.key, value: templateValue($0.value)) }
        return ChatMessage(role: role, content: content, extra: shareGPT ? [] : extra)
    }

    /// A JSON value as the template sees it.
    static func templateValue(_ j: JSONValue) -> TemplateValue {
        switch j {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .number(let t): return Int(t).map(TemplateValue.int) ?? .double(Double(t) ?? .nan)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(templateValue))
        case .object(let o): return .object(o.map { (key: $0.key, value: templateValue($0.value)) })
        }
    }

    /// The rendered conversation cut into masked and trained segments (one trained segment
    /// per assistant message; everything trained with `trainOnSource`).
    func segments(tokenizer: Tokenizer, trainOnSource: Bool, record: DataRecord, path: String) throws(DataError) -> [TextSegment] {
        func render(_ m: ArraySlice<ChatMessage>, _ generationPrompt: Bool) throws(DataError) -> [UInt8] {
            do {
                return Array(try tokenizer.applyChatTemplate(Array(m), addGenerationPrompt: generationPrompt).utf8)
            } catch {
                throw .chatTemplate(path: path, line: record.line, reason: record.place + "\(error)")
            }
        }
        let full = try render(messages[...], false)
        if trainOnSource { return [TextSegment(String(decoding: full, as: UTF8.self), trained: true)] }
        var out: [TextSegment] = []
        var cursor = 0
        for i in messages.indices where messages[i].role == "assistant" {
            let start = try render(messages[..<i], true)
            let end = try render(messages[...i], false)
            guard start.count >= cursor, end.count >= start.count,
                  full.starts(with: start), full.starts(with: end) else {
                throw .chatTemplate(path: path, line: record.line, reason: record.place
                    + "the template does not render messages[\(i)] (assistant) as a continuation of the messages before it, "
                    + "so its tokens cannot be told apart; use trainOnSource, or a template that renders each message on its own")
            }
            var stop = end.count
            while stop > start.count && DataFileReader.isBlank(full[stop - 1]) { stop -= 1 }
            if start.count > cursor { out.append(TextSegment(text(full[cursor..<start.count]), trained: false)) }
            if stop > start.count { out.append(TextSegment(text(full[start.count..<stop]), trained: true)) }
            cursor = stop
        }
        if cursor < full.count { out.append(TextSegment(text(full[cursor...]), trained: false)) }
        return out
    }

    private func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
}
