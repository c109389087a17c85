import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// T5 against transformers and PEFT on the tiny checkpoints of Tests/Fixtures/tiny-t5
/// (Scripts/fixtures/make_tiny_t5.py): T5 v1.1 (gated-GELU, own LM head) and original T5 (ReLU,
/// tied head with the d_model^-0.5 rescale, 3 decoder blocks against 2 encoder blocks). Encoder
/// output and teacher-forced logits within 1e-4; greedy 32 tokens identical (cached decoding).
final class T5Tests: XCTestCase {
    struct Pair: Decodable { let source: [Int]; let target: [Int]; let loss: Double; let greedy32: [Int] }
    struct Expected: Decodable {
        let pairs: [Pair]
        let qv_target_modules: [String]
        let all_target_modules: [String]
        let curve: [Double]
    }
    static let variants = ["v1_1", "original"]

    static func load(_ variant: String) throws -> (T5Model, Expected, SafeTensorsFile) {
        let d = Fixtures.path("tiny-t5/\(variant)")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
        return (try T5Model.load(directory: d + "/hf"), e, try SafeTensorsFile(path: d + "/expected.safetensors"))
    }

    func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func testEncoderOutputAndLogitsMatchTransformers() throws {
        for variant in Self.variants {
            let (m, e, ref) = try Self.load(variant)
            for (i, p) in e.pairs.enumerated() {
                XCTAssertLessThan(maxAbsDiff(try m.encoderOutput(p.source), try ref.floats("enc\(i)")), 1e-4, "\(variant) enc\(i)")
                let input = [m.config.startTokenId] + p.target.dropLast()
                let got = try m.logits(source: p.source, decoderInput: input).flatMap { $0 }
                let diff = maxAbsDiff(got, try ref.floats("logits\(i)"))
                XCTAssertLessThan(diff, 1e-4, "\(variant) logits\(i)")
                print("[t5 \(variant)] pair \(i): logits within \(diff) of transformers")
            }
        }
    }

    func testGreedyDecodingMatchesTransformers() throws {
        for variant in Self.variants {
            let (m, e, _) = try Self.load(variant)
            let got = try m.greedy(sources: e.pairs.map(\.source), maxTokens: 32, stopAtEOS: false)
            for (i, p) in e.pairs.enumerated() { XCTAssertEqual(got[i], p.greedy32, "\(variant) pair \(i)") }
        }
    }
}
