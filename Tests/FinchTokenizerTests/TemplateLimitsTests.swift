@testable import FinchTokenizer
import Foundation
import XCTest

/// A chat template is a little program from a downloaded file: it cannot run for ever, exhaust
/// memory, overflow the stack or read files. Each hostile template below fails with an error that
/// names what it hit, quickly.
final class TemplateLimitsTests: XCTestCase {
    func fails(_ source: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        let start = Date()
        do {
            let t = try ChatTemplate(source)
            let out = try t.render(messages: [ChatMessage(role: "user", content: "hi")])
            XCTFail("rendered \(out.utf8.count) bytes instead of failing", file: file, line: line)
        } catch {
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "took too long to fail", file: file, line: line)
    }

    func testRunawayLoopsStop() {
        fails("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "ran too long")
        fails("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro recursion is too deep")
    }

    func testHugeValuesAreRefusedBeforeTheyAreMade() {
        fails("{{ 'a' * 100000000000 }}", "too large")
        fails("{{ ['a'] * 9223372036854775807 }}", "too large")
        fails("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", "too large")
        fails("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "too large")
        fails("{{ ('x' * 10000000).replace('', 'yy') }}", "too large")
        fails("{{ ('x' * 10000000) | replace('x', 'yy') }}", "too large")
        fails("{{ 'x' | indent(100000000) }}", "too large")
        fails("{{ messages | tojson(indent=100000000) }}", "too large")
        fails("{{ range(100000) | join('x' * 1000) }}", "too large")
        fails("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "output would be too large")
        fails("{{ range(1000000000) | length }}", "range too big")
    }

    func testDeepNestingIsASyntaxError() {
        fails("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}", "nests too deeply")
        fails("{{ " + String(repeating: "not ", count: 5000) + "1 }}", "nests too deeply")
        fails("{{ " + String(repeating: "-", count: 5000) + "1 }}", "nests too deeply")
        fails("{{ " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + " }}", "nests too deeply")
        fails(String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000), "nests too deeply")
    }

    func testNoFileOrEnvironmentAccess() {
        for source in ["{% include '/etc/passwd' %}", "{% import 'x.j2' as x %}", "{% extends 'base.j2' %}",
                       "{% from 'x' import y %}"] {
            XCTAssertThrowsError(try ChatTemplate(source), source)
        }
        fails("{{ messages.__class__.__init__.__globals__ }}", "has no attribute")
        fails("{{ cycler() }}", "not supported")
    }

    /// Exponents are computed by squaring: a huge one finishes at once (wrapping like the other
    /// integer operations).
    func testHugeExponentFinishes() throws {
        let start = Date()
        _ = try ChatTemplate("{{ 3 ** 100000000000000 }}").render(messages: [])
        // Squaring takes ~47 multiplications; a loop of 10^14 would take hours. A bound far above
        // the first and far below the second keeps a loaded machine from failing the test.
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }
}
