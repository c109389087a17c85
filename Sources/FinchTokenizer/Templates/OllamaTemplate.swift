import Foundation

/// A chat template as Ollama needs it: the Jinja template of the tokenizer read as a per-message
/// layout (each role's text before and after its content, the generation prompt, the text a
/// conversation without a system message starts with, such as a default system message), written
/// as an Ollama Go `TEMPLATE` for a Modelfile.
///
/// The layout is found by rendering probe conversations with the Jinja template itself and
/// reading the text around the probe contents; it is then checked by rendering a set of
/// conversations both ways (the Jinja template, and this layout as the Go template computes it):
/// a template that is not per-message (Llama 2's `[INST]` with the system folded into the first
/// turn, Gemma's system in the user turn, tool formats) yields no layout, and then Ollama's own
/// detection from the GGUF's `tokenizer.chat_template` is left to do the work.
public struct OllamaChatFormat: Sendable, Equatable {
    public struct Wrap: Sendable, Equatable {
        public var prefix: String
        public var suffix: String
    }
    public var system: Wrap
    public var user: Wrap
    public var assistant: Wrap
    /// What `add_generation_prompt` appends after the last message.
    public var generationPrompt: String
    /// What the Jinja template writes before the first message when that is not a system message
    /// (a default system message such as SmolLM2's or Llama 3.1's), empty for most.
    public var leadWithoutSystem: String

    /// Why `derive` found no layout.
    public enum Failure: Error, CustomStringConvertible, Sendable, Equatable {
        case noTemplate
        case notPerMessage(String)
        public var description: String {
            switch self {
            case .noTemplate: "the tokenizer has no chat template"
            case .notPerMessage(let why): "the chat template does not wrap each message on its own (\(why))"
            }
        }
    }

    /// Reads the layout of `tokenizer`'s chat template. A leading BOS token text is left out when
    /// the tokenizer adds BOS itself (llama.cpp and Ollama tokenize the prompt with it).
    public static func derive(from tokenizer: Tokenizer) throws(Failure) -> OllamaChatFormat {
        guard tokenizer.chatTemplate != nil else { throw .noTemplate }
        let (sys, u1, a1, u2) = ("Qzxsysmsg", "Qzxuserone", "Qzxasstone", "Qzxusertwo")
        func render(_ m: [(String, String)], _ gen: Bool) throws(Failure) -> String {
            do {
                var text = try tokenizer.applyChatTemplate(m.map { ChatMessage(role: $0.0, content: $0.1) }, addGenerationPrompt: gen)
                if tokenizer.addsBOS, let bos = tokenizer.bosToken, text.hasPrefix(bos) { text.removeFirst(bos.count) }
                return text
            } catch {
                throw .notPerMessage("it fails on a probe conversation: \(error)")
            }
        }
        /// `text` split around the markers, in order: the text before the first, between, after the last.
        func pieces(_ text: String, _ markers: [String]) throws(Failure) -> [String] {
            var out: [String] = [], rest = Substring(text)
            for m in markers {
                guard let r = rest.range(of: m) else { throw .notPerMessage("a message's content is not rendered as given") }
                out.append(String(rest[..<r.lowerBound]))
                rest = rest[r.upperBound...]
            }
            out.append(String(rest))
            return out
        }
        func dropPrefix(_ s: String, _ p: String, _ what: String) throws(Failure) -> String {
            guard s.hasPrefix(p) else { throw .notPerMessage(what) }
            return String(s.dropFirst(p.count))
        }
        func dropSuffix(_ s: String, _ p: String, _ what: String) throws(Failure) -> String {
            guard s.hasSuffix(p) else { throw .notPerMessage(what) }
            return String(s.dropLast(p.count))
        }
        let ru = try pieces(render([("user", u1)], false), [u1])                       // lead+uPre | uSuf
        let rg = try render([("user", u1)], true)
        let ra = try pieces(render([("user", u1), ("assistant", a1)], false), [u1, a1])  // lead+uPre | uSuf+aPre | aSuf
        let rua = try pieces(render([("user", u1), ("assistant", a1), ("user", u2)], false), [u1, a1, u2])
        let rs = try pieces(render([("system", sys), ("user", u1)], false), [sys, u1])  // sPre | sSuf+uPre | uSuf
        let userSuffix = ru[1]
        let generation = try dropPrefix(rg, ru[0] + u1 + userSuffix, "the generation prompt is not appended after the conversation")
        let assistantPrefix = try dropPrefix(ra[1], userSuffix, "the user's turn ends differently before an answer")
        let assistantSuffix = ra[2]
        let userPrefix = try dropPrefix(rua[2], assistantSuffix, "a user turn after an answer starts differently")
        let lead = try dropSuffix(ru[0], userPrefix, "the first user turn starts differently from later ones")
        let systemSuffix = try dropSuffix(rs[1], userPrefix, "the user turn after a system message starts differently")
        let f = OllamaChatFormat(system: Wrap(prefix: rs[0], suffix: systemSuffix), user: Wrap(prefix: userPrefix, suffix: userSuffix),
                                 assistant: Wrap(prefix: assistantPrefix, suffix: assistantSuffix),
                                 generationPrompt: generation, leadWithoutSystem: lead)
        // The layout must give what the Jinja template gives.
        let conversations: [[(String, String)]] = [
            [("user", "Hello there!")],
            [("system", "Be brief."), ("user", "Hi")],
            [("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3+3?")],
            [("system", "You are a pirate."), ("user", "Hi"), ("assistant", "Arr."), ("user", "Where is the ship?\nTell me.")],
            [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")],
        ]
        for c in conversations {
            for gen in [true, false] {
                let expected = try render(c, gen)
                let got = f.render(c.map { ChatMessage(role: $0.0, content: $0.1) }, addGenerationPrompt: gen, closeLastAssistant: true)
                guard expected == got else {
                    throw .notPerMessage("a \(c.count)-message conversation renders differently from the per-message layout")
                }
            }
        }
        return f
    }

    /// The conversation as the Go `TEMPLATE` renders it (`leadWithoutSystem` first when the first
    /// message is no system message, the generation prompt after a final non-assistant
    /// message; a final assistant message left open so the model continues it, unless
    /// `closeLastAssistant`). With `addGenerationPrompt` false the generation prompt is left out
    /// (as Jinja's `add_generation_prompt=False`), which Ollama never asks.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, closeLastAssistant: Bool = false) -> String {
        var out = ""
        for (i, msg) in messages.enumerated() {
            let last = i == messages.count - 1
            if i == 0 && msg.role != "system" { out += leadWithoutSystem }
            var content = ""
            if case .string(let c)? = msg.content { content = c }
            switch msg.role {
            case "system": out += system.prefix + content + system.suffix
            case "user": out += user.prefix + content + user.suffix
            case "assistant": out += assistant.prefix + content + (last && !closeLastAssistant ? "" : assistant.suffix)
            default: break
            }
            if last && msg.role != "assistant" && addGenerationPrompt { out += generationPrompt }
        }
        return out
    }

    /// Ollama's Go template (text/template over `.Messages`), one line, no whitespace trimming,
    /// so that every character of the layout is kept.
    public var goTemplate: String {
        func lit(_ s: String) -> String { s.replacingOccurrences(of: "{{", with: "{{\"{{\"}}") }
        return "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            + (leadWithoutSystem.isEmpty ? "" : "{{ if and (eq $i 0) (ne .Role \"system\") }}\(lit(leadWithoutSystem)){{ end }}")
            + "{{ if eq .Role \"system\" }}\(lit(system.prefix)){{ .Content }}\(lit(system.suffix))"
            + "{{ else if eq .Role \"user\" }}\(lit(user.prefix)){{ .Content }}\(lit(user.suffix))"
            + "{{ else if eq .Role \"assistant\" }}\(lit(assistant.prefix)){{ .Content }}{{ if not $last }}\(lit(assistant.suffix)){{ end }}"
            + "{{ end }}{{ if and $last (ne .Role \"assistant\") }}\(lit(generationPrompt)){{ end }}{{ end }}"
    }

    /// Texts that end an answer: the assistant suffix's first line (`<|im_end|>`), when it has one.
    public var stopTexts: [String] {
        let s = assistant.suffix.trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? [] : [s]
    }
}

/// An Ollama Modelfile: `FROM` the GGUF, `ADAPTER` a LoRA GGUF, `TEMPLATE` from the chat template, `PARAMETER stop` for the end-of-turn and end-of-sequence texts.
public struct OllamaModelfile: Sendable {
    public var from: String
    public var adapter: String?
    public var format: OllamaChatFormat?
    public var stops: [String]
    /// Comment lines at the top.
    public var comments: [String]

    /// A Modelfile for `tokenizer`'s chat format (`format` nil and a comment saying why when its
    /// template has no per-message layout; Ollama then reads the GGUF's template itself).
    public init(from: String, adapter: String? = nil, tokenizer: Tokenizer, comments: [String] = []) {
        self.from = from; self.adapter = adapter; self.comments = comments
        var stops: [String] = []
        do {
            format = try OllamaChatFormat.derive(from: tokenizer)
            stops += format!.stopTexts
        } catch {
            format = nil
            self.comments.append("No TEMPLATE: \(error); Ollama reads the GGUF's tokenizer.chat_template.")
        }
        for id in tokenizer.eosTokenIds { if let t = tokenizer.token(for: id) { stops.append(t) } }
        var seen = Set<String>()
        self.stops = stops.filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// Modelfile text. Strings that hold `"""` cannot be written triple-quoted; such a template is left out.
    public var text: String {
        var lines = comments.map { "# " + $0 }
        lines.append("FROM \(from)")
        if let adapter { lines.append("ADAPTER \(adapter)") }
        if let f = format {
            let template = f.goTemplate
            if !template.contains("\"\"\"") { lines.append("TEMPLATE \"\"\"\(template)\"\"\"") }
        }
        for s in stops {
            let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            lines.append("PARAMETER stop \"\(escaped)\"")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
