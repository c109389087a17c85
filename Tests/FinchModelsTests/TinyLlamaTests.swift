import FinchCore
import FinchFormats
@testable import FinchModels
import Foundation
import FinchTestSupport
import XCTest

/// The tiny generated checkpoint (Scripts/fixtures/make_tiny_llama.py) against transformers' outputs.
final class TinyLlamaTests: XCTestCase {
    struct Expected: Decodable {
        let ids: [Int]
        let batch_ids: [[Int]]
        let batch_mask: [[Int]]
        let greedy12_from_short: [Int]
    }

    static let expected: Expected = {
        let data = FileManager.default.contents(atPath: Fixtures.path("tiny-llama/expected.json"))!
        return try! JSONDecoder().decode(Expected.self, from: data)
    }()

    static func reference(_ name: String) throws -> [Float] {
        try SafeTensorsFile(path: Fixtures.path("tiny-llama/expected.safetensors")).floats(name)
    }

    func loadHF(_ dtype: WeightDType = .f32) throws -> DecoderModel {
        let dir = Fixtures.path("tiny-llama/hf")
        let config = try LlamaConfig.load(configJSON: dir + "/config.json")
        return try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: dtype)
    }

    func loadGGUF(_ dtype: WeightDType = .f32) throws -> DecoderModel {
        let file = try GGUFFile(path: Fixtures.path("tiny-llama/tiny.gguf"))
        let config = try LlamaConfig.load(gguf: file)
        return try DecoderModel.load(from: GGUFWeightSource(file: file, config: config), config: config, dtype: dtype)
    }

    func fullLogits(_ m: any CausalLM) throws -> [Float] {
        let out = try m.forward([SequenceInput(tokens: Self.expected.ids, cache: m.makeCache())], logits: .all)
        return out.values.array
    }

    func testConfigFromTransformers5ConfigJSON() throws {
        let c = try LlamaConfig.load(configJSON: Fixtures.path("tiny-llama/hf/config.json"))
        XCTAssertEqual(c.ropeTheta, 10000)
        XCTAssertEqual(c.ropeScaling?.ropeType, "llama3")
        XCTAssertEqual(c.numKeyValueHeads, 2)
        XCTAssertFalse(c.tieWordEmbeddings)
    }

    func testHFDirectoryLogitsMatchTransformers() throws {
        let ref = try Self.reference("full.logits")
        let got = try fullLogits(try loadHF())
        XCTAssertEqual(got.count, ref.count)
        XCTAssertLessThan(maxAbsDiff(got, ref), 1e-4)
    }

    func testGGUFLogitsMatchTransformers() throws {
        let m = try loadGGUF()
        XCTAssertEqual((m.config as? LlamaConfig)?.ropeTheta, 10000)
        let ref = try Self.reference("full.logits")
        XCTAssertLessThan(maxAbsDiff(try fullLogits(m), ref), 1e-4)
    }

    func testIncrementalDecodingEqualsFullForward() throws {
        let m = try loadHF()
        let ids = Self.expected.ids
        let ref = try Self.reference("full.logits")
        let v = m.vocabSize
        let cache = m.makeCache(capacity: 16)   // forces the cache to grow
        // Prefill 3 tokens, then one at a time.
        var got = try m.forward([SequenceInput(tokens: Array(ids[0..<3]), cache: cache)], logits: .all).values.array
        for t in ids[3...] {
            got += try m.forward([SequenceInput(tokens: [t], cache: cache)], logits: .last).values.array
        }
        XCTAssertEqual(cache.length, ids.count)
        XCTAssertEqual(got.count, ids.count * v)
        XCTAssertLessThan(maxAbsDiff(got, ref), 1e-4)
    }

    func testPaddedBatchWithAttentionMask() throws {
        let m = try loadHF()
        let e = Self.expected
        let ref = try Self.reference("batch.logits")
        let out = try m.logits(tokens: e.batch_ids, attentionMask: e.batch_mask)
        let t = e.batch_ids[0].count, v = m.vocabSize
        for b in 0..<2 {
            for i in 0..<t where e.batch_mask[b][i] == 1 {
                let r = Array(ref[((b * t + i) * v)..<((b * t + i + 1) * v)])
                XCTAssertLessThan(maxAbsDiff(out[b][i], r), 1e-4, "batch \(b) position \(i)")
            }
        }
    }

    func testBatchOfSequencesEqualsSeparateRuns() throws {
        let m = try loadHF()
        let ids = Self.expected.ids
        let a = Array(ids[0..<4]), b = Array(ids[2..<11])
        let both = try m.forward([SequenceInput(tokens: a, cache: m.makeCache()),
                                  SequenceInput(tokens: b, cache: m.makeCache())], logits: .last)
        let one = try m.forward([SequenceInput(tokens: a, cache: m.makeCache())], logits: .last)
        let two = try m.forward([SequenceInput(tokens: b, cache: m.makeCache())], logits: .last)
        XCTAssertLessThan(maxAbsDiff(Array(both.row(0)), Array(one.row(0))), 1e-5)
        XCTAssertLessThan(maxAbsDiff(Array(both.row(1)), Array(two.row(0))), 1e-5)
    }

    func testGreedyMatchesTransformersGenerate() throws {
        let m = try loadGGUF()
        let e = Self.expected
        let cache = m.makeCache()
        var next = Array(e.ids.prefix(5))
        var out: [Int] = []
        for _ in 0..<12 {
            let l = try m.forward([SequenceInput(tokens: next, cache: cache)], logits: .last)
            let t = Sampler.argmax(Array(l.row(0)))
            out.append(t)
            next = [t]
        }
        XCTAssertEqual(out, e.greedy12_from_short)
    }

    func testBF16WeightsStayClose() throws {
        let ref = try Self.reference("full.logits")
        let m = try loadHF(.bf16)
        XCTAssertEqual(m.dtype, .bf16)
        let got = try fullLogits(m)
        let d = maxAbsDiff(got, ref)
        XCTAssertLessThan(d, 0.05)   // bf16 rounding of weights and activations
        XCTAssertGreaterThan(d, 0)    // and it really ran in bf16
    }

    func testBadTokenIsATypedError() throws {
        let m = try loadHF()
        XCTAssertThrowsError(try m.forward([SequenceInput(tokens: [m.vocabSize], cache: m.makeCache())])) { e in
            guard case ModelError.tokenOutOfVocabulary(let t, let v, _) = e, t == m.vocabSize, v == m.vocabSize else { return XCTFail("\(e)") }
        }
    }

    func testInvalidConfigIsRejected() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-badcfg-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("config.json").path
        try #"{"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 3, "num_key_value_heads": 2, "vocab_size": 10}"#
            .write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LlamaConfig.load(configJSON: p)) { e in
            XCTAssertTrue("\(e)".contains(p), "\(e)")
            XCTAssertTrue("\(e)".contains("num_key_value_heads"), "\(e)")
        }
    }
}
