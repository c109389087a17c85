import Foundation
import XCTest
import FinchTestSupport
@testable import FinchTokenizer

/// Adding tokens as Hugging Face's tokenizers do (Tests/Fixtures/tokenizer/added-tokens.json from
/// Scripts/fixtures/make_added_tokens_reference.py, tokenizers 0.23): on the tiny llama and qwen2 tokenizers, special
/// tokens and then plain ones (one special already in the vocabulary keeps its id), the ids, sizes, encodings and
/// decodes with and without special tokens; written and read back, the same.
final class AddedTokensTests: XCTestCase {
    func testAddingEqualsHuggingFace() throws {
        let reference = try XCTUnwrap(try TokFixtures.json("added-tokens.json") as? [String: [String: Any]])
        for family in ["llama", "qwen2"] {
            let r = try XCTUnwrap(reference[family])
            let dir = Fixtures.path("tiny-\(family)/hf")
            let base = try Tokenizer(huggingFaceDirectory: dir)
            XCTAssertEqual(base.vocabSize, r["size_before"] as? Int)
            let special = try XCTUnwrap(r["special"] as? [String]), plain = try XCTUnwrap(r["plain"] as? [String])
            let (withSpecial, specialIds) = try base.adding(special, special: true)
            XCTAssertEqual(withSpecial.vocabSize, r["size_after_special"] as? Int, family)
            let (tok, plainIds) = try withSpecial.adding(plain, special: false)
            XCTAssertEqual(tok.vocabSize, r["size_after"] as? Int, family)
            let ids = try XCTUnwrap(r["ids"] as? [String: Int])
            XCTAssertEqual(specialIds, special.map { ids[$0]! }, family)
            XCTAssertEqual(plainIds, plain.map { ids[$0]! }, family)
            for (i, t) in zip(specialIds + plainIds, special + plain) { XCTAssertEqual(tok.token(for: i), t); XCTAssertEqual(tok.isSpecial(i), special.contains(t)) }

            let out = NSTemporaryDirectory() + "finch-added-\(UUID().uuidString)"
            addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try tok.writeTokenizerJSON(to: out)
            let reread = try Tokenizer(huggingFaceDirectory: out)
            XCTAssertEqual(reread.vocabSize, tok.vocabSize)
            for c in try XCTUnwrap(r["cases"] as? [[String: Any]]) {
                let text = try XCTUnwrap(c["text"] as? String), want = try XCTUnwrap(c["ids"] as? [Int])
                for t in [tok, reread] {
                    XCTAssertEqual(t.encode(text), want, "\(family): \(text)")
                    XCTAssertEqual(t.decode(want), c["decoded"] as? String, family)
                    XCTAssertEqual(t.decode(want, skipSpecialTokens: true), c["decoded_skip_special"] as? String, family)
                }
            }
        }
    }

    func testEmptyAndRepeatedTokens() throws {
        let base = try Tokenizer(huggingFaceDirectory: Fixtures.path("tiny-llama/hf"))
        XCTAssertThrowsError(try base.adding([""], special: true))
        let (tok, ids) = try base.adding(["<x>", "<x>"], special: true)
        XCTAssertEqual(ids, [base.vocabSize, base.vocabSize], "a repeated token is added once")
        XCTAssertEqual(tok.vocabSize, base.vocabSize + 1)
        let (again, same) = try tok.adding(["<x>"], special: false)
        XCTAssertEqual(same, ids.prefix(1).map { $0 })
        XCTAssertTrue(again.isSpecial(same[0]), "an added token is left as it is")
    }
}
