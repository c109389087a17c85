import FinchFormats
import FinchTestSupport
@testable import FinchTokenizer
import Foundation
import XCTest

/// T5's tokenizer layout (SentencePiece Unigram with scores, the `nmt_nfkc` Precompiled
/// normalizer, WhitespaceSplit + Metaspace, `</s>` appended) against HF `tokenizers` on 300
/// strings: the tiny vocabulary of Tests/Fixtures/tiny-t5 (Scripts/fixtures/make_tiny_t5.py), with
/// full-width letters, ligatures, combining accents, unknown scripts, emoji, runs of blanks and
/// special tokens inside text.
final class UnigramTokenizerTests: XCTestCase {
    func tokenizer() throws -> Tokenizer {
        let dir = Fixtures.path("tiny-t5/v1_1/hf")
        return try Tokenizer(tokenizerJSONAt: dir + "/tokenizer.json", configAt: dir + "/tokenizer_config.json")
    }

    func reference() throws -> (strings: [String], ids: [[Int]], decoded: [String]) {
        let json = try JSONParser.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/tokens.json")))))
        let strings = json["strings"]!.arrayValue!.map { $0.stringValue! }
        let ids = json["ids"]!.arrayValue!.map { $0.arrayValue!.map { $0.wholeNumberValue! } }
        let decoded = json["decoded"]!.arrayValue!.map { $0.stringValue! }
        XCTAssertEqual(json["transformers_agrees"]?.boolValue, true)
        return (strings, ids, decoded)
    }

    func testIdsAndDecodingEqualTokenizers() throws {
        let tok = try tokenizer()
        let ref = try reference()
        XCTAssertEqual(ref.strings.count, 300)
        var wrong = 0
        for (i, s) in ref.strings.enumerated() {
            let ids = tok.encode(s, addSpecialTokens: true)
            if ids != ref.ids[i] {
                wrong += 1
                if wrong <= 8 { XCTFail("\(s.debugDescription): \(ids) != \(ref.ids[i])") }
            }
            XCTAssertEqual(tok.decode(ref.ids[i], skipSpecialTokens: true), ref.decoded[i], s.debugDescription)
        }
        XCTAssertEqual(wrong, 0)
        XCTAssertEqual(tok.eosTokenId, 1)
        XCTAssertEqual(tok.padTokenId, 0)
        XCTAssertEqual(tok.unknownTokenId, 2)
        XCTAssertTrue(tok.addsEOS)
    }

    /// Written back (merge / export copy the tokenizer), the file loads to the same ids.
    func testWrittenTokenizerGivesTheSameIds() throws {
        let tok = try tokenizer()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-unigram-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try tok.writeTokenizerJSON(to: dir)
        let back = try Tokenizer(tokenizerJSONAt: dir + "/tokenizer.json", configAt: dir + "/tokenizer_config.json")
        let ref = try reference()
        for s in ref.strings { XCTAssertEqual(back.encode(s, addSpecialTokens: true), tok.encode(s, addSpecialTokens: true), s) }
    }

    /// Viterbi on a hand-made vocabulary: the best-scoring cut wins, ties keep the path found
    /// first, unknown characters fuse into one unknown id, byte fallback spells them.
    func testViterbiTiesUnknownsAndByteFallback() throws {
        let pieces: [(String, Double)] = [("<unk>", 0), ("a", -1), ("b", -1), ("ab", -2.5), ("abc", -2), ("c", -3),
                                          ("<0xC3>", -5), ("<0xA9>", -5)]
        let m = try UnigramModel(pieces: pieces, unkId: 0, byteFallback: false, source: "test")
        func enc(_ s: String, _ model: UnigramModel) -> [Int32] { var o: [Int32] = []; model.encodeWord(Array(s.utf8)[...], into: &o); return o }
        XCTAssertEqual(enc("abc", m), [4])            // -2 beats a+b+c (-5) and ab+c (-5.5)
        XCTAssertEqual(enc("ab", m), [1, 2])          // a + b (-2) beats ab (-2.5)
        let tie = try UnigramModel(pieces: [("<unk>", 0), ("x", -1), ("y", -1), ("xy", -2)], unkId: 0, byteFallback: false, source: "test")
        XCTAssertEqual(enc("xy", tie), [3])           // a tie keeps the path found first (xy, from the start)
        XCTAssertEqual(enc("xyz", m), [0])            // three unknown characters, one fused unknown
        XCTAssertEqual(enc("axyb", m), [1, 0, 2])
        let fb = try UnigramModel(pieces: pieces, unkId: 0, byteFallback: true, source: "test")
        XCTAssertEqual(enc("aé", fb), [1, 6, 7])
        XCTAssertEqual(enc("aéx", fb), [1, 0])        // a run with a byte that has no piece stays unknown
        XCTAssertThrowsError(try UnigramModel(pieces: pieces, unkId: nil, byteFallback: false, source: "t.json"))
    }
}
