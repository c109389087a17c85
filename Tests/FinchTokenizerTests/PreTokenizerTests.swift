import Foundation
import XCTest
@testable import FinchTokenizer

final class PreTokenizerTests: XCTestCase {
    private func pieces(_ p: PreTokenizer, _ s: String) -> [String] {
        var out: [ArraySlice<UInt8>] = []
        p.preTokenize(ArraySlice(Array(s.utf8)), isFirstSegment: true, into: &out)
        return out.map { String(decoding: $0, as: UTF8.self) }
    }

    func testGPT2Scanner() {
        let p = PreTokenizer.byteLevel(addPrefixSpace: false, trimOffsets: true, useRegex: true)
        XCTAssertEqual(pieces(p, "Hello, world!"), ["Hello", ",", " world", "!"])
        XCTAssertEqual(pieces(p, "  leading spaces and   runs"), [" ", " leading", " spaces", " and", "  ", " runs"])
        XCTAssertEqual(pieces(p, "don't it's"), ["don", "'t", " it", "'s"])
        XCTAssertEqual(pieces(p, "DON'T"), ["DON", "'", "T"])
        XCTAssertEqual(pieces(p, "a\t\tb\n"), ["a", "\t", "\t", "b", "\n"])
        XCTAssertEqual(pieces(p, "x 123 4"), ["x", " 123", " 4"])
        XCTAssertEqual(pieces(p, "日本 語"), ["日本", " 語"])
    }

    func testLlama3Scanner() throws {
        let p = PreTokenizer.split(try .regex(SplitScanners.llama3Pattern), behavior: .isolated, invert: false)
        XCTAssertEqual(pieces(p, "  \n  x"), ["  \n", " ", " x"])
        XCTAssertEqual(pieces(p, " (hello"), [" (", "hello"])
        XCTAssertEqual(pieces(p, "\thi"), ["\thi"])
        XCTAssertEqual(pieces(p, "1234567"), ["123", "456", "7"])
        XCTAssertEqual(pieces(p, "'ſx"), ["'ſ", "x"])
        XCTAssertEqual(pieces(p, "'REx"), ["'RE", "x"])
        XCTAssertEqual(pieces(p, "\u{85}\u{85}x"), ["\u{85}", "\u{85}x"])
        XCTAssertEqual(pieces(p, "\u{200b}\u{200b}x"), ["\u{200b}\u{200b}", "x"])
        XCTAssertEqual(pieces(p, "a.\n\nb"), ["a", ".\n\n", "b"])
    }

    /// The scanners must agree with `NSRegularExpression` running the same patterns.
    func testScannersMatchRegexEngine() throws {
        // The system's ICU may know an older Unicode version than Oniguruma: compare on text whose
        // characters both know.
        let texts = try TokFixtures.corpus().map(\.text).filter { t in
            t.unicodeScalars.allSatisfy { ($0.properties.age?.major ?? 99) < 14 }
        }
        XCTAssertGreaterThan(texts.count, 500)
        for pattern in [SplitScanners.gpt2Pattern, SplitScanners.llama3Pattern, SplitScanners.qwen2Pattern] {
            let fast = PreTokenizer.split(try .regex(pattern), behavior: .isolated, invert: false)
            let slow = PreTokenizer.split(.regex(pattern, scanner: nil, matcher: try RegexMatcher(pattern: pattern)),
                                          behavior: .isolated, invert: false)
            var mismatches = 0
            for t in texts where pieces(fast, t) != pieces(slow, t) {
                mismatches += 1
                if mismatches <= 3 { XCTFail("pattern \(pattern) on \(t.debugDescription):\n\(pieces(fast, t).map(\.debugDescription))\n\(pieces(slow, t).map(\.debugDescription))") }
            }
            XCTAssertEqual(mismatches, 0)
        }
    }

    /// `\p{L}`, `\p{N}` and `\s` must put every code point where Oniguruma (in HF tokenizers) does.
    func testUnicodeClassesMatchOniguruma() throws {
        let ranges = try TokFixtures.json("unicode_classes.json") as! [String: [[Int]]]
        func set(_ name: String) -> Set<UInt32> {
            var s = Set<UInt32>()
            for r in ranges[name]! { for v in r[0]...r[1] { s.insert(UInt32(v)) } }
            return s
        }
        let letters = set("L"), numbers = set("N"), spaces = set("S")
        var diffs: [String] = []
        let t = CharClass.bmpTable
        for v in UInt32(0)...0x10FFFF where !(0xD800...0xDFFF).contains(v) {
            let c = CharClass.of(v, t)
            let want: UInt8 = letters.contains(v) ? CharClass.letter : numbers.contains(v) ? CharClass.number
                : spaces.contains(v) ? CharClass.space : CharClass.other
            if c != want { diffs.append(String(format: "U+%04X", v)) }
        }
        XCTAssertEqual(diffs, [], "every code point must be classified as Oniguruma does")
    }

    func testDigitsAndSplitBehaviors() throws {
        XCTAssertEqual(pieces(.digits(individualDigits: true), "a12b3"), ["a", "1", "2", "b", "3"])
        XCTAssertEqual(pieces(.digits(individualDigits: false), "a12b3"), ["a", "12", "b", "3"])
        let dash = SplitPattern.string("-")
        XCTAssertEqual(pieces(.split(dash, behavior: .removed, invert: false), "a-b--c"), ["a", "b", "c"])
        XCTAssertEqual(pieces(.split(dash, behavior: .isolated, invert: false), "a-b--c"), ["a", "-", "b", "-", "-", "c"])
        XCTAssertEqual(pieces(.split(dash, behavior: .mergedWithPrevious, invert: false), "a-b--c"), ["a-", "b-", "-", "c"])
        XCTAssertEqual(pieces(.split(dash, behavior: .mergedWithNext, invert: false), "a-b--c"), ["a", "-b", "-", "-c"])
        XCTAssertEqual(pieces(.split(dash, behavior: .contiguous, invert: false), "a-b--c"), ["a", "-", "b", "--", "c"])
        XCTAssertEqual(pieces(.whitespaceSplit, " a  b\tc "), ["a", "b", "c"])
        XCTAssertEqual(pieces(.metaspace(replacement: "▁", prependScheme: "always", split: true), "hi there"), ["▁hi", "▁there"])
    }
}
