import FinchFormats
import Foundation
import XCTest

final class JSONLinesFileTests: XCTestCase {
    var path = ""
    override func setUp() { path = FileManager.default.temporaryDirectory.appendingPathComponent("jl-\(UUID()).jsonl").path }
    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    func contents() throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    func testCreatesAppendsAndReadsBack() throws {
        let f = try JSONLinesFile(path: path)
        XCTAssertEqual(f.cutBytes, 0)
        try f.append([.object([("a", .int(1))]), .object([("a", .int(2))])])
        try f.append(.string("x"))
        XCTAssertEqual(try contents(), "{\"a\":1}\n{\"a\":2}\n\"x\"\n")
        let v = try JSONLinesFile(path: path).values()
        XCTAssertEqual(v.map(\.line), [1, 2, 3])
        XCTAssertEqual(v[1].value["a"], .int(2))
    }

    func testOpeningCutsAnUnfinishedLastLine() throws {
        try Data("{\"a\":1}\n{\"a\":".utf8).write(to: URL(fileURLWithPath: path))
        let f = try JSONLinesFile(path: path)
        XCTAssertEqual(f.cutBytes, 5)
        try f.append(.int(7))
        XCTAssertEqual(try contents(), "{\"a\":1}\n7\n")
        // A file with no newline at all is one unfinished line.
        try Data("{\"a\"".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try JSONLinesFile(path: path).cutBytes, 4)
        XCTAssertEqual(try contents(), "")
        // Longer than one read block.
        let long = "[" + String(repeating: "1,", count: 5000)
        try Data(("0\n" + long).utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try JSONLinesFile(path: path).cutBytes, long.utf8.count)
        XCTAssertEqual(try contents(), "0\n")
    }

    func testALineThatIsNotJSONIsNamed() throws {
        try Data("1\nnope\n".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try JSONLinesFile(path: path).values()) {
            XCTAssertTrue("\($0)".contains("\(self.path):2"), "\($0)")
        }
    }

    func testAnUnwritablePlaceIsAnErrorNamingIt() {
        XCTAssertThrowsError(try JSONLinesFile(path: "/nonexistent-dir/x.jsonl")) {
            XCTAssertTrue("\($0)".contains("/nonexistent-dir/x.jsonl"))
        }
    }
}
