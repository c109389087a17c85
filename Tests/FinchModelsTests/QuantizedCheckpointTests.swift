import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchQuant
import Foundation
import FinchTestSupport
import XCTest

/// 4-bit checkpoints in bitsandbytes' serialized layout. Tests/Fixtures/tiny-llama/bnb-* were
/// saved by transformers 5.23 + bitsandbytes 0.50.2 from the tiny f32 model
/// (Scripts/fixtures/make_bnb_checkpoints.py); Finch must write the same file byte for byte and
/// read it back as the same model.
final class QuantizedCheckpointTests: XCTestCase {
    static let fixture = Fixtures.path("tiny-llama/hf")
    static let ids = [1, 17, 42, 99, 250, 7, 3, 128, 64, 300, 5]
    static let variants: [(dir: String, quant: QuantizationConfig)] = [
        ("bnb-nf4-dq", QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true)),
        ("bnb-fp4", QuantizationConfig(type: .fp4, blocksize: 64, doubleQuant: false)),
    ]
    var scratch: String!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-q4ckpt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: scratch) }

    func logits(_ m: any CausalLM) throws -> [Float] {
        try m.forward([SequenceInput(tokens: Self.ids, cache: m.makeCache())], logits: .all).values.array
    }

    func load(_ dir: String, quantization: QuantizationConfig? = nil) throws -> DecoderModel {
        let config = try LlamaConfig.load(configJSON: dir + "/config.json")
        return try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: .f32,
                                   quantization: quantization)
    }

    func json(_ path: String) throws -> NSDictionary {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! NSDictionary
    }

    /// Quantizing on load and saving writes transformers' model.safetensors byte for byte (tensor
    /// order, header, packed nibbles, scales, nested state, the quant_state JSON) and the same
    /// quantization_config.
    func testSavedCheckpointIsByteIdenticalToTransformers() throws {
        for (dir, quant) in Self.variants {
            let lm = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: quant)
            let out = scratch + "/" + dir
            let result = try lm.model.saveHuggingFace(to: out, tokenizer: lm.tokenizer)
            let ours = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
            let theirs = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama/\(dir)/model.safetensors")))
            XCTAssertEqual(ours.count, theirs.count, dir)
            XCTAssertTrue(ours == theirs, "\(dir): model.safetensors differs from transformers + bitsandbytes'")
            XCTAssertEqual(try json(out + "/config.json")["quantization_config"] as? NSDictionary,
                           try json(Fixtures.path("tiny-llama/\(dir)/config.json"))["quantization_config"] as? NSDictionary, dir)
            XCTAssertEqual(result.tensorCount, (lm.model as! DecoderModel).spec.numLayers * 7 * (quant.doubleQuant ? 6 : 4) + 2 * 2 + 2 + 1, dir)
        }
    }

    /// A checkpoint transformers wrote loads as stored (no requantizing) and computes exactly
    /// what the model quantized on load computes; its layers keep the stored bytes.
    func testTransformersCheckpointLoadsAsStored() throws {
        for (dir, quant) in Self.variants {
            let stored = try load(Fixtures.path("tiny-llama/" + dir))
            let fresh = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: quant).model
            XCTAssertTrue(stored.isQuantized, dir)
            XCTAssertEqual(try logits(stored), try logits((fresh as! any CausalLM)), dir)
            XCTAssertEqual(stored.weightBytes, fresh.weightBytes, dir)
            let q = try XCTUnwrap(baseWeight(stored.layers[1][.down]).storage.fourBit)
            XCTAssertEqual(q.type, quant.type)
            XCTAssertEqual(q.shape, [64, 96])
            XCTAssertEqual(q.isDoubleQuantized, quant.doubleQuant)
            // Asking for the stored settings is fine; asking for others is an error that says so.
            XCTAssertNoThrow(try load(Fixtures.path("tiny-llama/" + dir), quantization: quant))
            var other = quant
            other.type = quant.type == .nf4 ? .fp4 : .nf4
            XCTAssertThrowsError(try load(Fixtures.path("tiny-llama/" + dir), quantization: other)) { e in
                XCTAssertTrue("\(e)".contains("is stored as nf4") || "\(e)".contains("is stored as fp4"), "\(e)")
            }
        }
    }

    /// Save → load → save round-trips the bytes, through LoadedModel (tokenizer included).
    func testRoundTripThroughLanguageModel() throws {
        let lm = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: Self.variants[0].quant)
        try lm.model.saveHuggingFace(to: scratch + "/a", tokenizer: lm.tokenizer)
        let again = try LoadedModel.load(scratch + "/a")
        XCTAssertTrue(again.model.isQuantized)
        XCTAssertEqual(try logits(again.causal), try logits(lm.causal))
        try again.model.saveHuggingFace(to: scratch + "/b", tokenizer: again.tokenizer)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: scratch + "/a/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: scratch + "/b/model.safetensors")))
        // Dequantized export: plain f32 weights that compute the same logits.
        try again.model.saveHuggingFace(to: scratch + "/c", tokenizer: again.tokenizer, dequantize: true)
        let plain = try load(scratch + "/c")
        XCTAssertFalse(plain.isQuantized)
        XCTAssertNil(try json(scratch + "/c/config.json")["quantization_config"])
        XCTAssertEqual(try logits(plain), try logits(lm.causal))
    }

    /// Adapters on a 4-bit base: an unmerged active adapter cannot be written into 4-bit weights;
    /// merged (requantized) it can; `dequantizeLinears` gives the float model PEFT users merge into.
    func testAdaptersAndDequantize() throws {
        let base = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: Self.variants[0].quant).model
        let before = try logits((base as! any CausalLM))
        let dequantized = try LoadedModel.load(Self.fixture, dtype: .f32, quantization: Self.variants[0].quant).model
        try dequantized.dequantizeLinears()
        XCTAssertFalse(dequantized.isQuantized)
        XCTAssertEqual(try logits((dequantized as! any CausalLM)), before)

        try base.addAdapter(Self.adapter(for: (base as! any CausalLM)))
        XCTAssertThrowsError(try base.saveHuggingFace(to: scratch + "/x", tokenizer: nil)) { e in
            XCTAssertTrue("\(e)".contains("not merged into the quantized"), "\(e)")
        }
        XCTAssertThrowsError(try base.dequantizeLinears())
        try base.mergeActiveAdapter()
        XCTAssertGreaterThan(base.lastMergeRoundingError, 0)
        try base.saveHuggingFace(to: scratch + "/merged", tokenizer: nil)
        XCTAssertEqual(try logits(load(scratch + "/merged")), try logits((base as! any CausalLM)))
    }

    /// A deterministic rank-4 all-linear adapter with non-zero B.
    static func adapter(for model: any CausalLM) -> LoRAAdapter {
        var rng = SplitMix(seed: 11)
        var modules: [String: LoRAModule] = [:]
        for (name, dims) in model.linearModules.sorted(by: { $0.key < $1.key }) {
            modules[name] = LoRAModule(rank: 4, scaling: 2, a: Buffer((0..<(4 * dims.in)).map { _ in rng.uniform() * 0.2 }),
                                       b: Buffer((0..<(dims.out * 4)).map { _ in rng.uniform() * 0.2 }), magnitude: nil,
                                       inFeatures: dims.in, outFeatures: dims.out)
        }
        return LoRAAdapter(config: AdapterConfig(r: 4, loraAlpha: 8, targetModules: .allLinear), modules: modules)
    }

    /// Damaged checkpoints: errors name the file and the tensor part that is wrong.
    func testMalformedCheckpointsSayWhatIsWrong() throws {
        let src = Fixtures.path("tiny-llama/bnb-nf4-dq")
        let file = try SafeTensorsFile(path: src + "/model.safetensors")
        let victim = "model.layers.0.mlp.up_proj.weight"
        func rewrite(_ name: String, drop: Set<String>, change: [String: SafeTensorsWriter.Entry] = [:],
                     add: [SafeTensorsWriter.Entry] = []) throws -> String {
            let dir = scratch + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: src + "/config.json", toPath: dir + "/config.json")
            let entries = file.tensors.filter { !drop.contains($0.name) }.map { t in
                change[t.name] ?? SafeTensorsWriter.Entry(name: t.name, dtype: t.dtype, shape: t.shape,
                                                          bytes: [UInt8](file.bytes(of: t)))
            } + add
            try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: dir + "/model.safetensors")
            return dir
        }
        let cases: [(String, String)] = [
            (try rewrite("no-absmax", drop: [victim + ".absmax"]), "missing tensor '\(victim).absmax'"),
            (try rewrite("short", drop: [], change: [victim: .init(name: victim, dtype: .u8, shape: [10, 1], bytes: [UInt8](repeating: 0, count: 10))]),
             "10 packed bytes"),
            (try rewrite("bad-json", drop: [], change: [victim + ".quant_state.bitsandbytes__nf4":
                .init(name: victim + ".quant_state.bitsandbytes__nf4", dtype: .u8, shape: [3], bytes: Array("{x}".utf8))]),
             "quant_state is not JSON"),
            (try rewrite("bad-map", drop: [], change: [victim + ".quant_map":
                .float32(name: victim + ".quant_map", shape: [16], values: FourBitType.fp4.code)]),
             "quant_map is not bitsandbytes' nf4 table"),
            // Only the parts of bitsandbytes' layout are taken with a 4-bit weight; anything else beside it is left over.
            (try rewrite("stray", drop: [], add: [.float32(name: victim + ".stray", shape: [1], values: [0])]), "\(victim).stray"),
        ]
        for (dir, message) in cases {
            XCTAssertThrowsError(try load(dir)) { e in
                XCTAssertTrue("\(e)".contains(message) && "\(e)".contains(dir), "\(dir): \(e)")
                XCTAssertTrue("\(e)".contains(victim), "\(e)")
            }
        }
        // A config that quantizes neither way (nor with 16-bit int8 weights) is refused before any weight is read.
        let eight = scratch + "/eight"
        try FileManager.default.createDirectory(atPath: eight, withIntermediateDirectories: true)
        var config = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"load_in_4bit\": true", with: "\"load_in_4bit\": false")
            .replacingOccurrences(of: "\"_load_in_4bit\": true", with: "\"_load_in_4bit\": false")
        try config.write(toFile: eight + "/config.json", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: src + "/model.safetensors", toPath: eight + "/model.safetensors")
        try FileManager.default.copyItem(atPath: Self.fixture + "/tokenizer.json", toPath: eight + "/tokenizer.json")
        XCTAssertThrowsError(try LoadedModel.load(eight)) { e in
            XCTAssertTrue("\(e)".contains("neither load_in_4bit nor load_in_8bit") && "\(e)".contains("config.json"), "\(e)")
        }
    }
}

extension LinearWeight.Storage {
    /// The 4-bit tensor of a quantized storage.
    var fourBit: FourBitTensor? {
        if case .quantized(let q, _) = self { return q as? FourBitTensor }
        return nil
    }

    /// The compressed matrix of a quantized storage.
    var quantizedMatrix: (any QuantizedMatrix)? {
        if case .quantized(let q, _) = self { return q }
        return nil
    }
}
