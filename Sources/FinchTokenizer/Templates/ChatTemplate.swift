/// A Jinja chat template (as stored in tokenizer_config.json or GGUF `tokenizer.chat_template`),
/// parsed once and rendered like transformers' `apply_chat_template`: Jinja with
/// `trim_blocks` and `lstrip_blocks`, `raise_exception`, `strftime_now`, `namespace`, `dict`,
/// loop controls, `{% generation %}`, and `tojson` as `json.dumps(ensure_ascii=False)`.
///
/// Constructs this interpreter does not implement are rejected with `TemplateError.unsupported`
/// (naming the construct, line and column) rather than rendered wrongly.
public struct ChatTemplate: @unchecked Sendable {
    /// The template text.
    public let source: String
    let nodes: [Node]

    /// Parses `source`. Throws `TemplateError.syntax` or `.unsupported` with the line and column.
    public init(_ source: String) throws {
        self.source = source
        var lexer = TemplateLexer(source)
        var parser = TemplateParser(tokens: try lexer.tokenize())
        nodes = try parser.parseTemplate()
        try ChatTemplate.validate(nodes)
    }

    /// Renders a conversation the way transformers does: `messages`, `tools` and `documents`
    /// (none when nil, as transformers passes them), `add_generation_prompt`, then `variables`
    /// (e.g. `bos_token`, `eos_token`, `date_string`) on top.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = false, tools: [TemplateValue]? = nil,
                       documents: [TemplateValue]? = nil, variables: [String: TemplateValue] = [:]) throws -> String {
        var context: [String: TemplateValue] = [:]
        for (k, v) in variables { context[k] = v }
        context["messages"] = .array(messages.map(\.templateValue))
        context["tools"] = tools.map { .array($0) } ?? .null
        context["documents"] = documents.map { .array($0) } ?? .null
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try render(context: context)
    }

    /// Renders with exactly the given top-level variables.
    public func render(context: [String: TemplateValue]) throws -> String {
        let interp = Interpreter(variables: context.mapValues(Value.init))
        var out = ""
        _ = try interp.render(nodes, interp.root, into: &out)
        return out
    }

    // MARK: - Static checks

    private static func validate(_ nodes: [Node]) throws {
        for n in nodes { try validate(n) }
    }

    private static func validate(_ n: Node) throws {
        switch n {
        case .text, .breakLoop, .continueLoop: break
        case .output(let e): try validate(e)
        case let .ifBlock(branches, otherwise):
            for (c, b) in branches { try validate(c); try validate(b) }
            if let otherwise { try validate(otherwise) }
        case let .forLoop(_, iter, filter, body, otherwise, _):
            try validate(iter)
            if let filter { try validate(filter) }
            try validate(body)
            if let otherwise { try validate(otherwise) }
        case let .set(_, e, _): try validate(e)
        case let .setBlock(_, body, filters, _):
            try validate(body)
            for f in filters { try checkFilter(f.0, f.1, f.3); for a in f.1 { try validate(a) }; for k in f.2 { try validate(k.1) } }
        case let .macro(_, params, body):
            for p in params { if let d = p.1 { try validate(d) } }
            try validate(body)
        case let .filterBlock(filters, body):
            for f in filters { try checkFilter(f.0, f.1, f.3); for a in f.1 { try validate(a) }; for k in f.2 { try validate(k.1) } }
            try validate(body)
        case .generation(let body): try validate(body)
        }
    }

    private static func checkFilter(_ name: String, _ args: [Expr], _ loc: SourceLocation) throws {
        guard Interpreter.supportedFilters.contains(name) else {
            throw TemplateError.unsupported(construct: "the '\(name)' filter", line: loc.line, column: loc.column)
        }
        // Test names given to select / reject / selectattr / rejectattr and filter names given to map.
        let nameIndex: Int? = ["select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1, "map": 0][name]
        if let k = nameIndex, k < args.count, case .literal(.string(let inner)) = args[k] {
            if name == "map" {
                try checkFilter(inner, [], loc)
            } else if !Interpreter.supportedTests.contains(inner) {
                throw TemplateError.unsupported(construct: "the '\(inner)' test", line: loc.line, column: loc.column)
            }
        }
    }

    private static func validate(_ e: Expr) throws {
        switch e {
        case .literal, .name: break
        case .list(let items), .tuple(let items), .concat(let items, _): for i in items { try validate(i) }
        case .dict(let pairs): for (k, v) in pairs { try validate(k); try validate(v) }
        case let .getAttr(o, _, _): try validate(o)
        case let .getItem(o, k, _): try validate(o); try validate(k)
        case let .slice(o, a, b, c, _):
            try validate(o)
            for x in [a, b, c] { if let x { try validate(x) } }
        case let .call(f, args, kwargs, _):
            try validate(f)
            for a in args { try validate(a) }
            for k in kwargs { try validate(k.1) }
        case let .filter(v, name, args, kwargs, loc):
            try checkFilter(name, args, loc)
            try validate(v)
            for a in args { try validate(a) }
            for k in kwargs { try validate(k.1) }
        case let .test(v, name, args, _, loc):
            guard Interpreter.supportedTests.contains(name) else {
                throw TemplateError.unsupported(construct: "the '\(name)' test", line: loc.line, column: loc.column)
            }
            try validate(v)
            for a in args { try validate(a) }
        case .not(let x), .neg(let x, _), .pos(let x, _): try validate(x)
        case let .binary(_, a, b, _), let .and(a, b), let .or(a, b): try validate(a); try validate(b)
        case let .compare(first, ops, _):
            try validate(first)
            for o in ops { try validate(o.1) }
        case let .condExpr(t, a, b):
            try validate(t); try validate(a)
            if let b { try validate(b) }
        }
    }
}

extension ChatTemplate {
    /// The `<|…|>` markers the template writes (`<|im_start|>`, `<|user|>`, `<|eot_id|>`: no
    /// whitespace inside): those in its text and string literals, then those it renders for a
    /// conversation of a system, a user and an assistant message with the generation prompt (markers
    /// built from the role's name), distinct, in order of appearance: the tokens a template of this
    /// style expects the vocabulary to hold whole.
    public var markers: [String] {
        var texts: [String] = []
        var lexer = TemplateLexer(source)
        for t in (try? lexer.tokenize()) ?? [] {
            switch t.kind {
            case .data(let s), .string(let s): texts.append(s)
            default: continue
            }
        }
        let conversation: [ChatMessage] = [.system("s"), .user("u"), .assistant("a")]
        for messages in [conversation, Array(conversation.dropFirst())] {
            if let r = try? render(messages: messages, addGenerationPrompt: true) { texts.append(r) }
        }
        var seen = Set<String>(), out: [String] = []
        for m in texts.flatMap(Self.markers(in:)) where seen.insert(m).inserted { out.append(m) }
        return out
    }

    /// The `<|…|>` markers in `text`, in order.
    static func markers(in text: String) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "<|") {
            let after = rest[open.upperBound...]
            guard let close = after.range(of: "|>") else { break }
            let inner = after[..<close.lowerBound]
            if !inner.isEmpty, !inner.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "|" }) {
                out.append("<|" + inner + "|>")
                rest = after[close.upperBound...]
            } else {
                rest = after
            }
        }
        return out
    }
}
