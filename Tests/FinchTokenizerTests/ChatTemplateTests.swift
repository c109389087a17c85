import Foundation
import FinchFormats
import XCTest
@testable import FinchTokenizer

/// Real chat templates rendered by the interpreter vs transformers' renderer
/// (Tests/Fixtures/tokenizer/template_cases.json, made by Scripts/fixtures/make_template_fixtures.py).
final class ChatTemplateTests: XCTestCase {
    func testRealTemplatesMatchTransformers() throws {
        // Parse with JSONParser to keep object key order (tool schemas print in order).
        let data = try Data(contentsOf: TokFixtures.url("template_cases.json"))
        guard case .array(let cases) = TemplateValue(try JSONParser.parse([UInt8](data), options: .lenient)) else { return XCTFail("bad fixture") }
        var templates: [String: ChatTemplate] = [:]
        var rendered = 0, errors = 0
        for c in cases {
            guard case .string(let name)? = c["template"], case .array(let msgs)? = c["messages"],
                  case .bool(let agp)? = c["add_generation_prompt"], case .object(let vars)? = c["variables"] else {
                return XCTFail("bad case \(c)")
            }
            if templates[name] == nil {
                let src = try String(contentsOf: TokFixtures.url("templates/\(name).jinja"), encoding: .utf8)
                templates[name] = try ChatTemplate(src)
            }
            let messages = msgs.map { m -> ChatMessage in
                guard case .object(let fields) = m else { fatalError() }
                var role = "", content: TemplateValue? = nil
                var extra: [(key: String, value: TemplateValue)] = []
                for (k, v) in fields {
                    if k == "role", case .string(let r) = v { role = r } else if k == "content" { content = v } else { extra.append((k, v)) }
                }
                return ChatMessage(role: role, content: content, extra: extra)
            }
            var tools: [TemplateValue]? = nil
            if case .array(let t)? = c["tools"] { tools = t }
            var variables: [String: TemplateValue] = [:]
            for (k, v) in vars { variables[k] = v }
            let label = "\(name) / \(c["conversation"]!) / agp=\(agp) / tools=\(tools != nil)"
            do {
                let out = try templates[name]!.render(messages: messages, addGenerationPrompt: agp, tools: tools, variables: variables)
                if case .string(let expected)? = c["expected"] {
                    XCTAssertEqual(out, expected, label)
                    rendered += 1
                } else {
                    XCTFail("\(label): expected an error (\(c["error"]!)), rendered \(out.debugDescription)")
                }
            } catch let e as TemplateError {
                if case .string(let expected)? = c["expected"] {
                    XCTFail("\(label): \(e), expected \(expected.debugDescription)")
                } else {
                    errors += 1
                    if case .string("TemplateError")? = c["error_type"], case .string(let msg)? = c["error"] {
                        XCTAssertEqual(e, .raised(message: msg, line: e.line, column: e.column), label)
                    }
                }
            }
        }
        print("[FinchTokenizer] chat templates: \(rendered) renderings and \(errors) expected errors match transformers")
        XCTAssertGreaterThan(rendered, 250)
    }

    func testSmolLM2TemplateWithBOSVariables() throws {
        let t = try ChatTemplate(try String(contentsOf: TokFixtures.url("templates/smollm2.jinja"), encoding: .utf8))
        let out = try t.render(messages: [.user("Hi")], addGenerationPrompt: true)
        XCTAssertEqual(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    func testStrftimeNow() throws {
        let t = try ChatTemplate(try String(contentsOf: TokFixtures.url("templates/llama3.2.jinja"), encoding: .utf8))
        let out = try t.render(messages: [.user("Hi")], addGenerationPrompt: true, variables: ["bos_token": "<|begin_of_text|>"])
        XCTAssertTrue(out.contains("Today Date: " + Interpreter.strftimeNow("%d %b %Y") + "\n"), out)
    }

    // MARK: - Language features

    private func render(_ src: String, _ vars: [String: TemplateValue] = [:]) throws -> String {
        try ChatTemplate(src).render(context: vars)
    }

    func testWhitespaceControl() throws {
        XCTAssertEqual(try render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc")
        XCTAssertEqual(try render("{% if true %}\nx\n{% endif %}\ny"), "x\ny")          // trim_blocks
        XCTAssertEqual(try render("  {% if true %}\n  x\n  {% endif %}\ny"), "  x\ny")   // lstrip_blocks
        XCTAssertEqual(try render("  {%+ if true %}x{% endif %}"), "  x")
        XCTAssertEqual(try render("{{ 'a' }}\n{{ 'b' }}\n"), "a\nb")                  // trailing newline dropped
        XCTAssertEqual(try render("a{# comment #}\nb"), "ab")
        XCTAssertEqual(try render("a {{- 'b' -}} c"), "abc")
        XCTAssertEqual(try render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}")
        XCTAssertEqual(try render("a\r\nb"), "a\nb")
    }

    func testExpressions() throws {
        XCTAssertEqual(try render("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 10 / 4 }}"),
                       "7|3|-4|1|2|1024|2.5")
        XCTAssertEqual(try render("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}"), "a1NoneTrue|abab|[1, 2]")
        XCTAssertEqual(try render("{{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 'b' in 'abc' }}|{{ 2 not in [1, 2] }}"), "True|False|True|False")
        XCTAssertEqual(try render("{{ 'x' if false }}|{{ 'y' if true else 'z' }}|{{ not 0 }}|{{ 0 or 'd' }}|{{ 1 and 2 }}"), "|y|True|d|2")
        XCTAssertEqual(try render("{{ x[1:] }}|{{ x[::-1] }}|{{ x[-2:] }}|{{ s[1:3] }}|{{ s[-1] }}", ["x": [1, 2, 3], "s": "héllo"]),
                       "[2, 3]|[3, 2, 1]|[2, 3]|él|o")
        XCTAssertEqual(try render("{{ d.a }}|{{ d['b'] }}|{{ d.get('c', 9) }}|{{ d.missing is defined }}|{{ l.0 }}",
                                  ["d": ["a": 1, "b": 2], "l": ["z"]]), "1|2|9|False|z")
        XCTAssertEqual(try render("{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 123.456 }}|{{ [1.5, 'a', none, {'k': false}] }}"),
                       "1.0|0.30000000000000004|1e+16|1e-05|123.456|[1.5, 'a', None, {'k': False}]")
        XCTAssertEqual(try render(#"{{ "it's" }}|{{ ["it's", 'q"'] }}|{{ '\u00e9\n' | length }}"#), #"it's|["it's", 'q"']|2"#)
    }

    func testStatements() throws {
        XCTAssertEqual(try render("{% for x in [1,2,3] %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"), "11,22,33")
        XCTAssertEqual(try render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty")
        XCTAssertEqual(try render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ["d": ["a": 1, "b": 2]]), "a=1;b=2;")
        XCTAssertEqual(try render("{% for x in range(10) if x % 3 == 0 %}{{ x }}{{ loop.length }} {% endfor %}"), "04 34 64 94 ")
        XCTAssertEqual(try render("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "13")
        XCTAssertEqual(try render("{% set c = 0 %}{% for i in range(3) %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}"), "1110")
        XCTAssertEqual(try render("{% set ns = namespace(c=0) %}{% for i in range(3) %}{% set ns.c = ns.c + 1 %}{% endfor %}{{ ns.c }}"), "3")
        XCTAssertEqual(try render("{% if false %}{% set y = 1 %}{% elif true %}{% set y = 2 %}{% endif %}{{ y }}"), "2")
        XCTAssertEqual(try render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set x %}block {{ a }}{% endset %}[{{ x }}]"), "12[block 1]")
        XCTAssertEqual(try render("{% macro g(n, p='!') %}Hi {{ n }}{{ p }}{% endmacro %}{{ g('A') }} {{ g('B', p='?') }}"), "Hi A! Hi B?")
        XCTAssertEqual(try render("{% filter upper %}abc{% endfilter %}"), "ABC")
        XCTAssertEqual(try render("{% for a in x %}{{ loop.previtem }}-{{ loop.nextitem }}{{ loop.cycle('x','y') }} {% endfor %}", ["x": [1, 2]]), "-2x 1-y ")
        XCTAssertEqual(try render("{% generation %}gen{% endgeneration %}"), "gen")
    }

    func testFiltersAndTests() throws {
        XCTAssertEqual(try render("{{ '  a b  ' | trim }}|{{ 'abc' | upper }}|{{ 'hello world' | capitalize }}|{{ 'hello world' | title }}"),
                       "a b|ABC|Hello world|Hello World")
        XCTAssertEqual(try render("{{ x | default('d') }}|{{ '' | default('d', true) }}|{{ [3,1,2] | sort | join(',') }}|{{ [1,2] | first }}{{ [1,2] | last }}"),
                       "d|d|1,2,3|12")
        XCTAssertEqual(try render("{{ 'a-b' | replace('-', '+') }}|{{ '5' | int + 1 }}|{{ 2 | string }}|{{ '1.5' | float }}|{{ -3 | abs }}"),
                       "a+b|6|2|1.5|3")
        XCTAssertEqual(try render("{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}|{{ msgs | rejectattr('role', 'eq', 'user') | map(attribute='role') | join }}",
                                  ["msgs": [["role": "user"], ["role": "assistant"], ["role": "user"]]]), "2|assistant")
        XCTAssertEqual(try render("{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}",
                                  ["d": ["b": [1, 2.5], "a": .null]]),
                       "{\"b\": [1, 2.5], \"a\": null}|{\n  \"b\": [\n    1,\n    2.5\n  ],\n  \"a\": null\n}|\"é\"|\"\\u00e9\"")
        XCTAssertEqual(try render("{{ d | tojson(sort_keys=true, separators=(',', ':')) }}", ["d": ["b": 1, "a": 2]]), "{\"a\":2,\"b\":1}")
        XCTAssertEqual(try render("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}"), "a\n  b|  a\n  b")
        XCTAssertEqual(try render("{{ d | items | list }}|{{ d | dictsort }}", ["d": ["b": 1, "a": 2]]), "[('b', 1), ('a', 2)]|[('a', 2), ('b', 1)]")
        XCTAssertEqual(try render("{{ x is none }}|{{ 's' is string }}|{{ {} is mapping }}|{{ [] is iterable }}|{{ 3 is odd }}|{{ y is defined }}|{{ 1 is number }}",
                                  ["x": .null]), "True|True|True|True|True|False|True")
        XCTAssertEqual(try render("{{ ' a b '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Hi'.lower() }}"),
                       "a b|['a', 'b']|['a', 'b', 'c']|True|True|hi")
        XCTAssertEqual(try render("{{ [1, 2, 1] | unique | list }}|{{ ['b', 'A', 'a'] | sort }}|{{ [1, 2] | sum }}|{{ [3, 1] | min }}{{ [3, 1] | max }}"),
                       "[1, 2]|['A', 'a', 'b']|3|13")
    }

    // MARK: - Errors

    func testRaiseExceptionReportsLocation() throws {
        let t = try ChatTemplate("line one\n  {{ raise_exception('bad role: ' + role) }}")
        XCTAssertThrowsError(try t.render(context: ["role": "tool"])) { error in
            XCTAssertEqual(error as? TemplateError, .raised(message: "bad role: tool", line: 2, column: 6))
        }
    }

    func testUnsupportedConstructsAreRejected() {
        func expectUnsupported(_ src: String, _ what: String, line: Int, file: StaticString = #filePath, lineNo: UInt = #line) {
            XCTAssertThrowsError(try ChatTemplate(src).render(context: [:]), file: file, line: lineNo) { error in
                guard case let .unsupported(construct, l, _) = error as? TemplateError else {
                    return XCTFail("\(error)", file: file, line: lineNo)
                }
                XCTAssertTrue(construct.contains(what), construct, file: file, line: lineNo)
                XCTAssertEqual(l, line, file: file, line: lineNo)
            }
        }
        expectUnsupported("{% include 'x.jinja' %}", "include", line: 1)
        expectUnsupported("ok\n{{ x | wordwrap }}", "wordwrap", line: 2)
        expectUnsupported("{{ x is divisible }}", "divisible", line: 1)
        expectUnsupported("{% for x in y recursive %}{% endfor %}", "recursive", line: 1)
        expectUnsupported("{{ '%s' % x }}", "printf", line: 1)
        expectUnsupported("{{ xs | selectattr('a', 'weird') }}", "weird", line: 1)
        expectUnsupported("{% extends 'base' %}", "extends", line: 1)
    }

    func testSyntaxErrorsReportLocation() {
        for (src, line) in [("{% if x %}", 1), ("a\n{{ x ", 2), ("{% endfor %}", 1), ("\n\n{{ 'unterminated }}", 3), ("{{ (1 + }}", 1)] {
            XCTAssertThrowsError(try ChatTemplate(src)) { error in
                guard case let .syntax(_, l, _) = error as? TemplateError else { return XCTFail("\(src): \(error)") }
                XCTAssertEqual(l, line, src)
            }
        }
    }

    func testRuntimeErrors() throws {
        XCTAssertThrowsError(try render("{{ x + 'a' }}")) { error in
            XCTAssertEqual(error as? TemplateError, .runtime(message: "'x' is undefined", line: 1, column: 6))
        }
        XCTAssertThrowsError(try render("{{ 1 + 'a' }}")) { error in
            guard case .runtime(let m, _, _) = error as? TemplateError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("unsupported operand"), m)
        }
        XCTAssertThrowsError(try render("{{ d.x.y }}", ["d": [:]])) { error in
            XCTAssertEqual(error as? TemplateError, .runtime(message: "'dict object' has no attribute 'x'", line: 1, column: 8))
        }
    }
}

extension TemplateError {
    var line: Int {
        switch self { case let .syntax(_, l, _), let .unsupported(_, l, _), let .runtime(_, l, _), let .raised(_, l, _): return l }
    }
    var column: Int {
        switch self { case let .syntax(_, _, c), let .unsupported(_, _, c), let .runtime(_, _, c), let .raised(_, _, c): return c }
    }
}
