import Foundation
import XCTest
import FinchFormats

/// Paths of the committed fixtures (made by Scripts/fixtures/make_format_fixtures.py).
enum Fixtures {
    static let directory: String = {
        let here = URL(fileURLWithPath: #filePath)  // Tests/FinchFormatsTests/Support/TestSupport.swift
        return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/formats").path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// A fresh temporary directory, removed by `cleanup()`.
final class TempDir {
    let path: String

    init() {
        let base = NSTemporaryDirectory()
        path = (base.hasSuffix("/") ? base : base + "/") + "finch-formats-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = file(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    func contents() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path))?.sorted() ?? []
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func readBytes(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path) ?? Data())
}

/// Index of the first element whose bit pattern differs, or nil when identical.
func firstBitDifference(_ a: [Float], _ b: [Float]) -> Int? {
    if a.count != b.count { return min(a.count, b.count) }
    for i in 0..<a.count where a[i].bitPattern != b[i].bitPattern { return i }
    return nil
}

/// Asserts `body` throws a `FormatError` that `matches`, and that its message names `path`.
func assertFormatError<T>(_ body: @autoclosure () throws -> T, path: String,
                          file: StaticString = #filePath, line: UInt = #line,
                          _ matches: (FormatError) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected a FormatError, got success", file: file, line: line)
    } catch let e as FormatError {
        XCTAssertTrue(matches(e), "unexpected error: \(e)", file: file, line: line)
        XCTAssertEqual(e.path, path, file: file, line: line)
        XCTAssertTrue(e.description.contains(path), "message does not name the file: \(e)", file: file, line: line)
        XCTAssertFalse(e.description.contains("\n"), "message is not one line: \(e)", file: file, line: line)
    } catch {
        XCTFail("expected a FormatError, got \(error)", file: file, line: line)
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2685821657736338717
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next() >> 32) } }
}
