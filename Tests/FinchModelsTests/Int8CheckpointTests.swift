import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchQuant
import Foundation
import FinchTestSupport
import XCTest

/// LLM.int8 bases on the tiny LLaMA against transformers 5.23 + bitsandbytes 0.50.2
/// (Tests/Fixtures/tiny-llama/bnb-int8, from Scripts/fixtures/make_int8_fixtures.py: the model
/// loaded with `load_in_8bit` and saved, and its logits in eval mode on the CPU).
final class Int8CheckpointTests: XCTestCase {
    static let fixture = Fixtures.path("tiny-llama/hf")
    static let stored = Fixtures.path("tiny-llama/bnb-int8")
    var scratch: String!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-int8-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: scratch) }

    func logits(_ m: any CausalLM, _ ids: [Int]) throws -> [Float] {
        try m.forward([SequenceInput(tokens: ids, cache: m.makeCache())], logits: .all).values.array
    }

    func reference() throws -> (ids: [Int], logits: [Float]) {
        let f = try SafeTensorsFile(path: Self.stored + "/int8_logits.safetensors")
        let ids = try f.bytes("input_ids").withMemoryRebound(to: Int64.self) { $0.map(Int.init) }
        return (ids, try f.floats("logits"))
    }

    /// Quantized on load (`--quantize int8`) and loaded from transformers' checkpoint: both give
    /// transformers' load_in_8bit logits, and hold its int8 codes.
    func testLogitsAreTransformersLoadIn8bit() throws {
        let (ids, expected) = try reference()
        let fresh = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: .int8())
        let stored = try LoadedModel.load(Self.stored, dtype: .f32)
        XCTAssertTrue(stored.model.isQuantized)
        for (name, lm) in [("quantized on load", fresh), ("transformers checkpoint", stored)] {
            let got = try logits(lm.causal, ids)
            let d = zip(got, expected).map { abs($0 - $1) }.max()!
            print("int8 tiny LLaMA (\(name)) vs transformers load_in_8bit: max |logit diff| = \(d)")
            XCTAssertLessThanOrEqual(d, 1e-5, name)
        }
        let q = try XCTUnwrap(baseWeight((stored.model as! DecoderModel).layers[1][.down]).storage.quantizedMatrix as? Int8Tensor)
        let p = try XCTUnwrap(baseWeight((fresh.model as! DecoderModel).layers[1][.down]).storage.quantizedMatrix as? Int8Tensor)
        XCTAssertEqual(q.shape, [64, 96])
        XCTAssertEqual(q.data, p.data)
        XCTAssertEqual(q.scb, p.scb)
        XCTAssertEqual(q.threshold, 6)
    }

    /// Saving an int8 model writes transformers' model.safetensors byte for byte and its
    /// quantization_config; a threshold in config.json is used on load.
    func testSavedCheckpointIsTransformers() throws {
        let lm = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: .int8())
        _ = try lm.model.saveHuggingFace(to: scratch + "/int8", tokenizer: lm.tokenizer)
        let ours = try Data(contentsOf: URL(fileURLWithPath: scratch + "/int8/model.safetensors"))
        let theirs = try Data(contentsOf: URL(fileURLWithPath: Self.stored + "/model.safetensors"))
        XCTAssertTrue(ours == theirs, "model.safetensors differs from transformers + bitsandbytes'")
        func qc(_ dir: String) throws -> NSDictionary? {
            let j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! NSDictionary
            return j["quantization_config"] as? NSDictionary
        }
        XCTAssertEqual(try qc(scratch + "/int8"), try qc(Self.stored))

        let t0 = try LoadedModel.load(Self.stored, dtype: .f32, quantization: .int8(threshold: 0)).model as! DecoderModel
        XCTAssertEqual((baseWeight(t0.layers[0][.q]).storage.quantizedMatrix as? Int8Tensor)?.threshold, 0)
        XCTAssertThrowsError(try LoadedModel.load(Self.stored, dtype: .f32, quantization: QuantizationConfig(type: .nf4))) { e in
            XCTAssertTrue("\(e)".contains("is stored as LLM.int8"), "\(e)")
        }
    }

    /// An adapter on an int8 base: gradients flow (the input gradient through CB · SCB / 127),
    /// merging requantizes and reports the rounding, the merged model saves and reloads.
    func testAdapterOnInt8Base() throws {
        let lm = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: .int8())
        let m = lm.model
        let base = try logits((m as! any CausalLM), [1, 5, 9, 200])
        try m.addAdapter(QuantizedCheckpointTests.adapter(for: (m as! any CausalLM)))
        let adapted = try logits((m as! any CausalLM), [1, 5, 9, 200])
        XCTAssertGreaterThan(zip(base, adapted).map { abs($0 - $1) }.max()!, 0.01)
        try m.mergeActiveAdapter()
        XCTAssertGreaterThan(m.lastMergeRoundingError, 0)
        _ = try m.saveHuggingFace(to: scratch + "/merged", tokenizer: lm.tokenizer)
        let again = try LoadedModel.load(scratch + "/merged")
        XCTAssertEqual(try logits(again.causal, [1, 5, 9, 200]), try logits((m as! any CausalLM), [1, 5, 9, 200]))
    }
}
