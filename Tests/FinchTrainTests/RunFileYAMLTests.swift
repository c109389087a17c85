import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// Hostile run files get an error naming the file and place, never a crash or a runaway: the
/// fuzzer found that Yams' own conversion traps on a mapping key that is a list (`- ? - 3`,
/// kept in Tests/Fixtures/fuzz-regressions/yaml-sequence-key.yaml) and on a base-60 integer that
/// overflows.
final class RunFileYAMLTests: XCTestCase {
    func file(_ text: String) throws -> String {
        let p = NSTemporaryDirectory() + "finch-yaml-\(UUID().uuidString).yaml"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    func refused(_ text: String, _ needle: String, file f: StaticString = #filePath, line: UInt = #line) throws {
        let p = try file(text)
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: p), file: f, line: line) { e in
            XCTAssertTrue("\(e)".contains(needle) && "\(e)".contains(p), "\(e)", file: f, line: line)
        }
    }

    func testFuzzerInputIsRefused() throws {
        let p = Fixtures.path("fuzz-regressions/yaml-sequence-key.yaml")
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: p)) { e in
            XCTAssertTrue("\(e)".contains("a key must be a plain name"), "\(e)")
        }
    }

    /// YAML 1.1 base-60 integers overflowed and trapped in Yams (the fuzzer's second find, kept in
    /// Tests/Fixtures/fuzz-regressions/yaml-sexagesimal-overflow.yaml); they are read as text.
    func testBase60IntegersAreText() throws {
        let p = Fixtures.path("fuzz-regressions/yaml-sexagesimal-overflow.yaml")
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: p)) { e in
            XCTAssertTrue("\(e)".contains("expected a mapping"), "\(e)")
        }
        let values = try XCTUnwrap(RunFileYAML.value("a: -2200020000020002210:0:1\nb: 1:30\nc: 42\n", path: "x.yaml"))
        XCTAssertEqual(values["a"]?.stringValue, "-2200020000020002210:0:1")
        XCTAssertEqual(values["b"]?.stringValue, "1:30")
        XCTAssertEqual(values["c"]?.intValue, 42)
        try refused("warmup_steps: 1:30\n", "warmup_steps")
    }

    func testKeysMustBeNamesGivenOnce() throws {
        try refused("? [lora_r, lora_alpha]\n: 16\n", ":1:")
        try refused("lora_r: 8\nlearning_rate: 1e-4\nlora_r: 16\n", "duplicated key(s): 'lora_r'")
    }

    func testAliasExpansionIsBounded() throws {
        // Nine levels of ten aliases each: 10^9 values if expanded.
        var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...8 { text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let start = Date()
        try refused(text, "more than 100000 values")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "refused early, not after expanding")
    }

    func testPlainRunFileStillLoads() throws {
        let c = try TrainingConfig.load(yamlAt: try file("lora_r: 16\nlearning_rate: 3.0e-4\nbf16: true\ntarget_modules: [q_proj, v_proj]\n"))
        XCTAssertEqual(c.loraR, 16)
        XCTAssertEqual(c.learningRate, 3e-4, accuracy: 1e-12)
        XCTAssertEqual(c.targetModules, ["q_proj", "v_proj"])
    }
}
