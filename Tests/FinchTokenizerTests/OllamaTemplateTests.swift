import Foundation
import XCTest
@testable import FinchTokenizer

/// Real chat templates read as Ollama per-message layouts (`OllamaChatFormat`): which templates
/// have one, what it is for ChatML with a default system message (SmolLM2) and Llama 3, and the
/// Go template and Modelfile written from it. (That Go's text/template renders the TEMPLATE as
/// `render` does is checked by Scripts/checks/export/modelfile_check.sh.)
final class OllamaTemplateTests: XCTestCase {
    func tokenizer(template name: String) throws -> Tokenizer {
        let t = try TokFixtures.tiny("bytelevel")
        t.chatTemplate = try String(contentsOf: TokFixtures.url("templates/\(name).jinja"), encoding: .utf8)
        return t
    }

    func testWhichTemplatesArePerMessage() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: TokFixtures.url("templates").path)
            .filter { $0.hasSuffix(".jinja") }.map { String($0.dropLast(6)) }.sorted()
        var found: [String] = []
        for n in names {
            do {
                _ = try OllamaChatFormat.derive(from: try tokenizer(template: n))
                found.append(n)
            } catch {
                print("\(n): \(error)")
            }
        }
        // Templates that fold the system message into a user turn (Gemma, Mistral), refuse a
        // system role, or need tools are not per-message: Ollama then reads the GGUF's own template.
        XCTAssertEqual(found, ["deepseek-r1", "llama3", "llama3.1", "llama3.2", "qwen1.5", "qwen2", "qwen2.5", "smollm2"])
    }

    func testSmolLM2ChatMLWithItsDefaultSystemMessage() throws {
        let f = try OllamaChatFormat.derive(from: try tokenizer(template: "smollm2"))
        XCTAssertEqual(f.user, .init(prefix: "<|im_start|>user\n", suffix: "<|im_end|>\n"))
        XCTAssertEqual(f.system, .init(prefix: "<|im_start|>system\n", suffix: "<|im_end|>\n"))
        XCTAssertEqual(f.assistant, .init(prefix: "<|im_start|>assistant\n", suffix: "<|im_end|>\n"))
        XCTAssertEqual(f.generationPrompt, "<|im_start|>assistant\n")
        XCTAssertEqual(f.leadWithoutSystem, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n")
        XCTAssertEqual(f.stopTexts, ["<|im_end|>"])
        // Ollama continues a final assistant message (no end marker after it).
        XCTAssertEqual(f.render([.system("S"), ChatMessage(role: "user", content: "U"), ChatMessage(role: "assistant", content: "A")]),
                       "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA")
        XCTAssertEqual(f.goTemplate, "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            + "{{ if and (eq $i 0) (ne .Role \"system\") }}<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n{{ end }}"
            + "{{ if eq .Role \"system\" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n"
            + "{{ else if eq .Role \"user\" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n"
            + "{{ else if eq .Role \"assistant\" }}<|im_start|>assistant\n{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}"
            + "{{ end }}{{ if and $last (ne .Role \"assistant\") }}<|im_start|>assistant\n{{ end }}{{ end }}")
    }

    func testLlama3HeadersAndTheDateLeadOf31() throws {
        let f = try OllamaChatFormat.derive(from: try tokenizer(template: "llama3"))
        XCTAssertEqual(f.user.prefix, "<|start_header_id|>user<|end_header_id|>\n\n")
        XCTAssertEqual(f.user.suffix, "<|eot_id|>")
        XCTAssertEqual(f.generationPrompt, "<|start_header_id|>assistant<|end_header_id|>\n\n")
        XCTAssertEqual(f.stopTexts, ["<|eot_id|>"])
        let f31 = try OllamaChatFormat.derive(from: try tokenizer(template: "llama3.1"))
        XCTAssertTrue(f31.leadWithoutSystem.contains("Cutting Knowledge Date"), f31.leadWithoutSystem)
    }

    func testModelfileText() throws {
        let t = try tokenizer(template: "smollm2")
        let m = OllamaModelfile(from: "./model.gguf", adapter: "./adapter.gguf", tokenizer: t, comments: ["made by a test"])
        let lines = m.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(Array(lines.prefix(3)), ["# made by a test", "FROM ./model.gguf", "ADAPTER ./adapter.gguf"])
        XCTAssertTrue(m.text.contains("TEMPLATE \"\"\"{{ range $i"), m.text)
        XCTAssertTrue(m.text.contains("PARAMETER stop \"<|im_end|>\"\n"), m.text)
        XCTAssertEqual(m.stops.first, "<|im_end|>")
        // A template without a per-message layout: no TEMPLATE, a comment saying why.
        let g = OllamaModelfile(from: "./g.gguf", tokenizer: try tokenizer(template: "gemma3"))
        XCTAssertNil(g.format)
        XCTAssertFalse(g.text.contains("\nTEMPLATE"))
        XCTAssertTrue(g.text.hasPrefix("# No TEMPLATE: the chat template does not wrap each message on its own"), g.text)
        // Template text holding "{{" is escaped for Go.
        var f = try OllamaChatFormat.derive(from: t)
        f.user.prefix = "{{user}}"
        XCTAssertTrue(f.goTemplate.contains("{{\"{{\"}}user}}"))
    }
}
