import Foundation
import XCTest
@testable import FinchTokenizer

final class StreamDecoderTests: XCTestCase {
    /// Streams `ids` one at a time; checks every piece is whole UTF-8 text and the total equals `decode`.
    private func checkStream(_ tok: Tokenizer, _ ids: [Int], skipSpecial: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        let stream = tok.streamDecoder(skipSpecialTokens: skipSpecial)
        var pieces: [String] = []
        for id in ids { pieces.append(stream.append(id)) }
        pieces.append(stream.flush())
        let full = tok.decode(ids, skipSpecialTokens: skipSpecial)
        XCTAssertEqual(pieces.joined(), full, file: file, line: line)
        if !full.contains("\u{FFFD}") {
            for p in pieces { XCTAssertFalse(p.contains("\u{FFFD}"), "a streamed piece has a broken character: \(p.debugDescription)", file: file, line: line) }
        }
    }

    func testStreamingEqualsFullDecodeOnCorpus() throws {
        let tok = try TokFixtures.smolLM2()
        var split = 0
        for c in try TokFixtures.corpus() {
            checkStream(tok, c.ids)
            checkStream(tok, c.ids, skipSpecial: true)
            // Count tokens that end inside a character (the case the decoder must hold back).
            let s = tok.streamDecoder()
            for id in c.ids where s.append(id).isEmpty && !(tok.token(for: id) ?? "").isEmpty { split += 1 }
        }
        XCTAssertGreaterThan(split, 100, "the corpus should split many characters across tokens")
    }

    func testEmojiAndCJKSplitAcrossTokens() throws {
        let tok = try TokFixtures.smolLM2()
        for text in ["emoji 🤖🦙🔥 mixed", "日本語のテキスト", "👩‍👩‍👧‍👦", "한국어", "a🤖b"] {
            let ids = tok.encode(text)
            let stream = tok.streamDecoder()
            var out = ""
            for id in ids {
                let piece = stream.append(id)
                XCTAssertFalse(piece.contains("\u{FFFD}"))
                out += piece
                XCTAssertTrue(text.unicodeScalars.starts(with: out.unicodeScalars), out.debugDescription)
            }
            out += stream.flush()
            XCTAssertEqual(out, text)
        }
    }

    func testInvalidBytesMatchLossyDecode() throws {
        let tok = try TokFixtures.smolLM2()
        // Byte tokens that never form valid UTF-8 (lone continuation bytes, a truncated sequence at the end).
        let lone = tok.id(for: String(Character(ByteLevel.byteToScalar[0x80])))!
        let lead3 = tok.id(for: String(Character(ByteLevel.byteToScalar[0xE3])))!
        let a = tok.encode("a")[0]
        for ids in [[lone], [a, lone, a], [lead3], [a, lead3], [lead3, a], [lead3, lone], [lead3, lone, lone, a], [a, lead3, lead3]] {
            checkStream(tok, ids)
        }
    }

    func testCompletePrefixLength() {
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength(Array("ab".utf8)), 2)
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0x61, 0xE6]), 1)          // lead of 3 held
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0x61, 0xE6, 0x97]), 1)    // 2 of 3 held
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0xE6, 0x97, 0xA5]), 3)
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0xF0, 0x9F, 0xA4]), 0)    // 3 of 4 held
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0xE0, 0x80]), 2)          // invalid: emit
        XCTAssertEqual(TokenStreamDecoder.completePrefixLength([0x80]), 1)
    }

    func testGenericDecoderStreaming() throws {
        // A SentencePiece-style decoder chain (Replace, ByteFallback, Fuse, Strip): the generic path.
        let tok = try TokFixtures.tiny("spm")
        for text in ["Hello world", "naïve café 日本語 🤖", "  two  spaces", "unknown ☃"] {
            checkStream(tok, tok.encode(text))
        }
    }
}
