import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTokenizer
import Foundation
import FinchTestSupport
import XCTest

/// Exporting the tiny fixture model with a LoRA adapter as a Hugging Face directory: the
/// reloaded checkpoint computes the adapter model's logits, with HF's names, config and tokenizer.
final class ExportTests: XCTestCase {
    static let fixture = Fixtures.path("tiny-llama/hf")
    static let ids = [1, 17, 42, 99, 250, 7, 3, 128, 64, 300, 5]
    var scratch: String!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-export-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// The fixture model (f32 unless told) and its tokenizer.
    func loadFixture(_ dtype: WeightDType = .f32) throws -> LoadedModel {
        try LoadedModel.load(Self.fixture, dtype: dtype)
    }

    /// A deterministic adapter on every linear layer (B non-zero, so it changes the model);
    /// with `dora`, the attention projections also get DoRA magnitudes.
    func makeAdapter(for model: any CausalLM, rank: Int = 4, dora: Bool = false) -> LoRAAdapter {
        var rng = SplitMix(seed: 7)
        var modules: [String: LoRAModule] = [:]
        for (name, dims) in model.linearModules.sorted(by: { $0.key < $1.key }) {
            let a = Buffer((0..<(rank * dims.in)).map { _ in rng.uniform() * 0.2 })
            let b = Buffer((0..<(dims.out * rank)).map { _ in rng.uniform() * 0.2 })
            let mag = dora && name.contains("self_attn")
                ? Buffer((0..<dims.out).map { _ in 0.5 + abs(rng.uniform()) }) : nil
            modules[name] = LoRAModule(rank: rank, scaling: 2, a: a, b: b, magnitude: mag,
                                       inFeatures: dims.in, outFeatures: dims.out)
        }
        return LoRAAdapter(config: AdapterConfig(r: rank, loraAlpha: Double(2 * rank), targetModules: .allLinear,
                                                 useDoRA: dora), modules: modules)
    }

    func logits(_ m: any CausalLM, _ ids: [Int] = ExportTests.ids) throws -> [Float] {
        try m.forward([SequenceInput(tokens: ids, cache: m.makeCache())], logits: .all).values.array
    }

    /// Loads an exported directory the way an HF-directory user would: config.json + safetensors.
    func reload(_ dir: String, _ dtype: WeightDType = .f32) throws -> DecoderModel {
        let config = try LlamaConfig.load(configJSON: dir + "/config.json")
        return try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: dtype)
    }

    func readJSON(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    func testMergedAdapterExportReloadsWithTheAdapterLogits() throws {
        let lm = try loadFixture()
        let base = try logits(lm.causal)
        try lm.model.addAdapter(makeAdapter(for: lm.causal))
        let withAdapter = try logits(lm.causal)
        XCTAssertGreaterThan(maxAbsDiff(withAdapter, base), 0.1, "the test adapter must change the model")
        try lm.model.mergeActiveAdapter()
        let out = scratch + "/merged"
        let result = try lm.model.saveHuggingFace(to: out, tokenizer: lm.tokenizer)
        XCTAssertEqual(result.adapters, ["default"])
        XCTAssertEqual(result.files, ["config.json", "generation_config.json", "model.safetensors",
                                      "tokenizer.json", "tokenizer_config.json"])
        let d = maxAbsDiff(try logits(try reload(out)), withAdapter)
        print("merged export vs adapter model: max |logit diff| = \(d)")
        XCTAssertLessThanOrEqual(d, 6e-6)   // ~3x the 1.9e-6 measured
    }

    /// A merged adapter exported as GGUF (f32): Finch reads the file back (q/k rows re-permuted,
    /// the fixture's llama3 rotary scaling as a rope_freqs tensor, tokenizer from the written
    /// metadata) and computes the adapter model's logits; q8_0 and
    /// q4_k_m files read back close to them, with llama-quantize's tensor mix.
    func testGGUFExportReloadsWithTheAdapterLogits() throws {
        let lm = try loadFixture()
        try lm.model.addAdapter(makeAdapter(for: lm.causal))
        let withAdapter = try logits(lm.causal)
        try lm.model.mergeActiveAdapter()
        let decoder = try XCTUnwrap(lm.model as? DecoderModel)
        let tokenizer = try lm.tokenizer.ggufMetadata(pre: "gpt-2")
        // Measured: f32 2.0e-6, q8_0 0.065, q4_k_m 0.35 (the quantization error itself, deterministic;
        // the quantizer's bytes equal ggml_quantize_chunk's: GGUFWriterTests).
        for (type, bound) in [(GGUFExportType.f32, Float(6e-6)), (.q8_0, 0.1), (.q4_k_m, 0.5)] {
            let path = scratch + "/tiny-\(type.rawValue).gguf"
            let result = try decoder.saveGGUF(to: path, tokenizer: tokenizer, type: type, name: "tiny")
            XCTAssertEqual(result.architecture, "llama")
            XCTAssertEqual(result.adapters, ["default"])
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.metadata["general.file_type"], .uint32(type.fileType))
            XCTAssertEqual(file.metadata["tokenizer.ggml.tokens"]?.arrayValue?.count, lm.tokenizer.vocabSize)
            XCTAssertEqual(file.tensor(named: "blk.0.attn_norm.weight")?.type, .f32, "norms stay f32")
            let reloaded = try LoadedModel.load(path, dtype: .f32)
            XCTAssertEqual(reloaded.tokenizer.encode("hello world, 123"), lm.tokenizer.encode("hello world, 123"))
            let d = maxAbsDiff(try logits(reloaded.causal), withAdapter)
            print("GGUF \(type.rawValue) export vs adapter model: max |logit diff| = \(d)")
            XCTAssertLessThanOrEqual(d, bound, type.rawValue)
        }
    }

    /// The adapter alone as a llama.cpp LoRA GGUF: names, ggml shapes, alpha / r = the trained
    /// scale (LoRA and rsLoRA), B's q / k rows interleaved as llama.cpp's LLaMA converter stores
    /// them. Read back by Finch onto the GGUF export of the base, it computes the adapter model's
    /// logits; a rank_pattern module keeps its scale through B; DoRA and quantized types are refused.
    func testGGUFLoRAAdapterAppliesAsTheAdapter() throws {
        let lm = try loadFixture()
        let decoder = try XCTUnwrap(lm.model as? DecoderModel)
        let basePath = scratch + "/base.gguf"
        _ = try decoder.saveGGUF(to: basePath, tokenizer: try lm.tokenizer.ggufMetadata(pre: "gpt-2"), type: .f32)
        for rs in [false, true] {
            let adapter = makeAdapter(for: lm.causal, rank: 4)
            adapter.config.useRSLoRA = rs
            adapter.config.loraAlpha = 6
            let scale = Float(rs ? 6 / 2.0 : 6 / 4.0)
            var modules: [String: LoRAModule] = [:]
            for (k, m) in adapter.modules {
                modules[k] = LoRAModule(rank: 4, scaling: scale, a: m.a, b: m.b, magnitude: nil, inFeatures: m.inFeatures, outFeatures: m.outFeatures)
            }
            adapter.modules = modules
            // One module trained with its own rank-pattern scale.
            let odd = "model.layers.1.mlp.down_proj"
            let m = modules[odd]!
            adapter.modules[odd] = LoRAModule(rank: 4, scaling: 0.25, a: m.a, b: m.b, magnitude: nil, inFeatures: m.inFeatures, outFeatures: m.outFeatures)
            let path = scratch + "/adapter-\(rs).gguf"
            let result = try decoder.config.saveGGUFLoRA(adapter, to: path)
            XCTAssertEqual(result.architecture, "llama")
            XCTAssertEqual(result.rescaled, [odd])
            XCTAssertEqual(result.alpha, scale * 4, accuracy: 1e-6)
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.metadata["general.type"], .string("adapter"))
            XCTAssertEqual(file.metadata["adapter.type"], .string("lora"))
            XCTAssertEqual(file.metadata["adapter.lora.alpha"], .float32(scale * 4))
            XCTAssertEqual(file.tensors.count, 2 * adapter.modules.count)
            let spec = decoder.spec
            let q = try XCTUnwrap(file.tensor(named: "blk.0.attn_q.weight.lora_b"))
            XCTAssertEqual(q.dimensions, [4, spec.queryWidth])
            XCTAssertEqual(file.tensor(named: "blk.0.attn_q.weight.lora_a")?.dimensions, [spec.hiddenSize, 4])
            // Row 1 of the GGUF B of q is HF row D/2 (the interleave); v is stored as is.
            let qb = try file.dequantize(q), hfB = adapter.modules["model.layers.0.self_attn.q_proj"]!.b
            XCTAssertEqual(Array(qb[4..<8]), Array(hfB.array[(spec.headDim / 2 * 4)..<(spec.headDim / 2 * 4 + 4)]))
            let vb = try file.dequantize(try XCTUnwrap(file.tensor(named: "blk.0.attn_v.weight.lora_b")))
            XCTAssertEqual(vb, adapter.modules["model.layers.0.self_attn.v_proj"]!.b.array)

            // Applied by Finch to the exported base: the adapter model's logits.
            try lm.model.addAdapter(adapter, name: "ref")
            let expected = try logits(lm.causal)
            lm.model.setActiveAdapter(nil)
            let base = try LoadedModel.load(basePath, dtype: .f32)
            try base.model.loadAdapter(directory: path)
            let d = maxAbsDiff(try logits(base.causal), expected)
            print("GGUF LoRA (rsLoRA \(rs)) on the GGUF base vs the adapter model: max |logit diff| = \(d)")
            XCTAssertLessThanOrEqual(d, 1e-5)
        }
        let dora = makeAdapter(for: lm.causal, dora: true)
        XCTAssertThrowsError(try decoder.config.saveGGUFLoRA(dora, to: scratch + "/dora.gguf")) {
            XCTAssertTrue("\($0)".contains("merge first"), "\($0)")
        }
        XCTAssertThrowsError(try decoder.config.saveGGUFLoRA(makeAdapter(for: lm.causal), to: scratch + "/q.gguf", type: .q8_0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/dora.gguf"))
        // A model GGUF is not an adapter.
        XCTAssertThrowsError(try decoder.config.ggufLoRAAdapter(path: basePath)) {
            XCTAssertTrue("\($0)".contains("not a llama.cpp LoRA adapter"), "\($0)")
        }
    }

    /// GPT-2 (fused attn_qkv, Conv1D weights written [out, in] as llama.cpp's converter writes
    /// them, learned positions, biases) and Gemma 3 (llama.cpp's gemma3 keys, norms stored as
    /// 1 + w): exported as f32 GGUF and read back by Finch, the same logits as the source model;
    /// a Gemma 3 whose layer pattern llama.cpp would not follow is refused by name.
    func testGPT2AndGemma3GGUFExports() throws {
        let gpt2 = try LoadedModel.load(Fixtures.path("tiny-gpt2/hf"), dtype: .f32)
        let ids = [1, 17, 42, 99, 250, 7, 3]
        let path = scratch + "/gpt2.gguf"
        let result = try (gpt2.model as! DecoderModel).saveGGUF(to: path, tokenizer: try gpt2.tokenizer.ggufMetadata(pre: nil),
                                                              type: .f32)
        XCTAssertEqual(result.architecture, "gpt2")
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.tensor(named: "blk.0.attn_qkv.weight")?.dimensions, [64, 192], "[in, out] in ggml order: rows of the [out, in] product")
        XCTAssertNotNil(file.tensor(named: "position_embd.weight"))
        XCTAssertNil(file.tensor(named: "output.weight"), "tied head")
        let back = try LoadedModel.load(path, dtype: .f32)
        XCTAssertEqual(back.tokenizer.encode("hello world"), gpt2.tokenizer.encode("hello world"))
        let d = maxAbsDiff(try logits(back.causal, ids), try logits(gpt2.causal, ids))
        print("GPT-2 GGUF export read back: max |logit diff| = \(d)")
        XCTAssertLessThanOrEqual(d, 1e-6)

        let tiny = try LoadedModel.load(Fixtures.path("tiny-gemma3/hf"), dtype: .f32)
        XCTAssertThrowsError(try (tiny.model as! DecoderModel).saveGGUF(to: scratch + "/g.gguf", tokenizer: [], type: .f32)) {
            XCTAssertTrue("\($0)".contains("every sixth layer"), "\($0)")
        }
        let gemma = try LoadedModel.load(try Fixtures.gemma3(), dtype: .f32)
        let source = try GGUFFile(path: gemma.path)
        let gpath = scratch + "/gemma3.gguf"
        _ = try (gemma.model as! DecoderModel).saveGGUF(to: gpath, tokenizer: source.metadataKeys.filter { $0.hasPrefix("tokenizer.") }
            .map { ($0, source.metadata[$0]!) }, type: .f32)
        let out = try GGUFFile(path: gpath)
        for k in source.metadataKeys where k.hasPrefix("gemma3.") { XCTAssertEqual(out.metadata[k], source.metadata[k], k) }
        XCTAssertEqual(Set(out.tensors.map(\.name)), Set(source.tensors.map(\.name)))
        let g = try LoadedModel.load(gpath, dtype: .f32)
        let gd = maxAbsDiff(try logits(g.causal, ids), try logits(gemma.causal, ids))
        print("Gemma 3 270M GGUF export read back: max |logit diff| = \(gd)")
        XCTAssertLessThanOrEqual(gd, 1e-5)
    }

    /// llama-quantize's Q4_K_M mix: the LM head in Q6_K (Q8_0 when its rows do not hold 256-blocks),
    /// attn_v / ffn_down in Q6_K on the layers llama.cpp gives more bits, Q4_K elsewhere, Q5_0 where
    /// rows do not hold 256-blocks; 1-D tensors f32.
    func testQ4KMTensorMixIsLlamaQuantizes() {
        let t = GGUFExportType.q4_k_m
        XCTAssertEqual(t.tensorType(ggufName: "output.weight", ne0: 2048, rank: 2, layer: nil, layers: 24, isOutput: true), .q6_K)
        XCTAssertEqual(t.tensorType(ggufName: "token_embd.weight", ne0: 576, rank: 2, layer: nil, layers: 30, isOutput: true), .q8_0)
        XCTAssertEqual(t.tensorType(ggufName: "token_embd.weight", ne0: 2048, rank: 2, layer: nil, layers: 24, isOutput: false), .q4_K)
        XCTAssertEqual(t.tensorType(ggufName: "blk.0.attn_q.weight", ne0: 576, rank: 2, layer: 0, layers: 30, isOutput: false), .q5_0)
        XCTAssertEqual(t.tensorType(ggufName: "blk.1.attn_norm.weight", ne0: 2048, rank: 1, layer: 1, layers: 24, isOutput: false), .f32)
        // 32 layers: more bits on 0-3, 28-31 and every third from 4 (6, 9, ..., 27).
        let more = (0..<32).filter { t.tensorType(ggufName: "blk.\($0).ffn_down.weight", ne0: 4096, rank: 2, layer: $0, layers: 32, isOutput: false) == .q6_K }
        XCTAssertEqual(more, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31])
        XCTAssertEqual(t.tensorType(ggufName: "blk.5.attn_v.weight", ne0: 4096, rank: 2, layer: 5, layers: 32, isOutput: false), .q4_K)
        XCTAssertEqual(GGUFExportType.q4_0.tensorType(ggufName: "output.weight", ne0: 4096, rank: 2, layer: nil, layers: 32, isOutput: true), .q6_K)
        XCTAssertEqual(GGUFExportType.q8_0.tensorType(ggufName: "output.weight", ne0: 4096, rank: 2, layer: nil, layers: 32, isOutput: true), .q8_0)
    }

    func testActiveUnmergedAdapterIsFoldedIntoACopy() throws {
        let lm = try loadFixture()
        try lm.model.addAdapter(makeAdapter(for: lm.causal, dora: true))
        let withAdapter = try logits(lm.causal)
        let out = scratch + "/folded"
        let result = try lm.model.saveHuggingFace(to: out, tokenizer: nil)
        XCTAssertEqual(result.adapters, ["default"])
        XCTAssertFalse(result.files.contains("tokenizer.json"))
        XCTAssertLessThanOrEqual(maxAbsDiff(try logits(try reload(out)), withAdapter), 1e-5)
        // The model itself is unchanged: still unmerged, same logits, and disabling still gives the base.
        XCTAssertEqual(lm.model.activeAdapter, "default")
        XCTAssertTrue(try logits(lm.causal) == withAdapter)
        lm.model.setActiveAdapter(nil)
        let baseOut = scratch + "/base"
        XCTAssertEqual(try lm.model.saveHuggingFace(to: baseOut, tokenizer: nil).adapters, [])
        XCTAssertLessThanOrEqual(maxAbsDiff(try logits(try reload(baseOut)), try logits(try loadFixture().causal)), 1e-6)
    }

    func testConfigRoundTripsAndNamesAreHuggingFaces() throws {
        let lm = try loadFixture()
        let out = scratch + "/cfg"
        try lm.model.saveHuggingFace(to: out, tokenizer: lm.tokenizer)
        let original = try LlamaConfig.load(configJSON: Self.fixture + "/config.json")
        XCTAssertEqual(try LlamaConfig.load(configJSON: out + "/config.json"), original)
        let json = try readJSON(out + "/config.json")
        XCTAssertEqual(json["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(json["model_type"] as? String, "llama")
        XCTAssertEqual(json["torch_dtype"] as? String, "float32")
        XCTAssertEqual(json["dtype"] as? String, "float32")
        XCTAssertEqual(json["rms_norm_eps"] as? Double, 1e-5)
        XCTAssertEqual((json["rope_scaling"] as? [String: Any])?["rope_type"] as? String, "llama3")
        XCTAssertEqual(json["tie_word_embeddings"] as? Bool, false)
        let gen = try readJSON(out + "/generation_config.json")
        XCTAssertEqual(gen["bos_token_id"] as? Int, 1)
        XCTAssertEqual(gen["eos_token_id"] as? Int, 2)
        // Same tensor names and shapes as the checkpoint transformers saved.
        let ref = try SafeTensorsCollection(directory: Self.fixture)
        let got = try SafeTensorsFile(path: out + "/model.safetensors")
        XCTAssertEqual(Set(got.tensorNames), Set(ref.names))
        for name in ref.names { XCTAssertEqual(got.info(name)?.shape, ref.info(name)?.shape, name) }
        XCTAssertEqual(got.metadata["format"], "pt")
    }

    func testTokenizerAndChatTemplateRoundTrip() throws {
        let lm = try loadFixture()
        let out = scratch + "/tok"
        try lm.model.saveHuggingFace(to: out, tokenizer: lm.tokenizer)
        let tok = try Tokenizer(tokenizerJSONAt: out + "/tokenizer.json", configAt: out + "/tokenizer_config.json")
        XCTAssertEqual(tok.chatTemplate, lm.tokenizer.chatTemplate)
        let text = "Hello world, the quick brown fox! 123"
        XCTAssertEqual(tok.encode(text, addSpecialTokens: true), lm.tokenizer.encode(text, addSpecialTokens: true))
        if lm.tokenizer.chatTemplate != nil {
            let msgs = [ChatMessage(role: "user", content: "What is 2+2?")]
            XCTAssertEqual(try tok.applyChatTemplate(msgs, addGenerationPrompt: true),
                           try lm.tokenizer.applyChatTemplate(msgs, addGenerationPrompt: true))
        }
    }

    func testTiedEmbeddingsWriteNoLMHead() throws {
        var config = try LlamaConfig.load(configJSON: Self.fixture + "/config.json")
        config.tieWordEmbeddings = true
        let source = WithoutLMHead(base: try SafeTensorsWeightSource(directory: Self.fixture))
        let model = try DecoderModel.load(from: source, config: config, dtype: .f32)
        let out = scratch + "/tied"
        try model.saveHuggingFace(to: out, tokenizer: nil)
        let file = try SafeTensorsFile(path: out + "/model.safetensors")
        XCTAssertNil(file.info("lm_head.weight"))
        XCTAssertEqual(try readJSON(out + "/config.json")["tie_word_embeddings"] as? Bool, true)
        XCTAssertLessThanOrEqual(maxAbsDiff(try logits(try reload(out)), try logits(model)), 1e-6)
    }

    func testBF16AndF16ExportsLoad() throws {
        let lm = try loadFixture()
        try lm.model.addAdapter(makeAdapter(for: lm.causal))
        try lm.model.mergeActiveAdapter()
        let f32Dir = scratch + "/f32"
        try lm.model.saveHuggingFace(to: f32Dir, tokenizer: nil)
        let f32 = try SafeTensorsFile(path: f32Dir + "/model.safetensors")
        let ref = try logits(lm.causal)
        for dtype in [ExportDType.bf16, .f16] {
            let dir = scratch + "/" + dtype.rawValue
            try lm.model.saveHuggingFace(to: dir, tokenizer: lm.tokenizer, dtype: dtype)
            XCTAssertEqual(try readJSON(dir + "/config.json")["torch_dtype"] as? String, dtype.torchName)
            let file = try SafeTensorsFile(path: dir + "/model.safetensors")
            for name in f32.tensorNames {
                XCTAssertEqual(file.info(name)?.dtype, dtype.safeTensorsDType, name)
                // Each value is the f32 export's value rounded to the type.
                let rounded = try f32.floats(name).map {
                    dtype == .bf16 ? Float(bf16Bits: $0.bf16Bits) : Float(f16Bits: $0.f16Bits)
                }
                XCTAssertTrue(try file.floats(name) == rounded, name)
            }
            let d = maxAbsDiff(try logits(try reload(dir)), ref)
            print("\(dtype.rawValue) export vs f32 model: max |logit diff| = \(d)")
            XCTAssertLessThan(d, 0.05)
            // A bf16 model loads it too.
            XCTAssertLessThan(maxAbsDiff(try logits(try reload(dir, .bf16)), ref), 0.1)
        }
    }

    func testShardedExportHasAnIndexAndReloads() throws {
        let lm = try loadFixture()
        let out = scratch + "/sharded"
        let result = try lm.model.saveHuggingFace(to: out, tokenizer: nil, maxShardBytes: 40_000)
        let shards = result.files.filter { $0.hasPrefix("model-") }
        XCTAssertGreaterThan(shards.count, 2)
        XCTAssertEqual(shards.first, String(format: "model-00001-of-%05d.safetensors", shards.count))
        let index = try readJSON(out + "/model.safetensors.index.json")
        XCTAssertEqual((index["metadata"] as? [String: Any])?["total_size"] as? Int, result.tensorBytes)
        XCTAssertEqual((index["weight_map"] as? [String: String])?.count, result.tensorCount)
        XCTAssertTrue(try logits(try reload(out)) == (try logits(lm.causal)))
        XCTAssertThrowsError(try lm.model.saveHuggingFace(to: scratch + "/bad", tokenizer: nil, maxShardBytes: 0))
    }

    func testExistingDirectoryIsAnErrorUnlessOverwrite() throws {
        let lm = try loadFixture()
        let out = scratch + "/existing"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out + "/notes.txt"))
        XCTAssertThrowsError(try lm.model.saveHuggingFace(to: out, tokenizer: nil)) { error in
            guard case ExportError.outputExists(let path) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, out)
            XCTAssertTrue("\(error)".contains("overwrite"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), ["notes.txt"])
        try lm.model.saveHuggingFace(to: out, tokenizer: nil, overwrite: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/notes.txt"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
        // An empty directory is simply filled; a file in the way is an error.
        let empty = scratch + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try lm.model.saveHuggingFace(to: empty, tokenizer: nil)
        XCTAssertTrue(FileManager.default.fileExists(atPath: empty + "/config.json"))
        try Data().write(to: URL(fileURLWithPath: scratch + "/file"))
        XCTAssertThrowsError(try lm.model.saveHuggingFace(to: scratch + "/file", tokenizer: nil, overwrite: true)) {
            guard case ExportError.notADirectory = $0 else { return XCTFail("\($0)") }
        }
        // No temporary or moved-aside directories are left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [])
    }
}

/// A weight source that hides `lm_head.weight` (to build a tied model from an untied checkpoint).
private struct WithoutLMHead: WeightSource {
    let base: SafeTensorsWeightSource
    var path: String { base.path }
    var tensorNames: [String] { base.tensorNames.filter { $0 != "lm_head.weight" } }
    func shape(of name: String) -> [Int]? { name == "lm_head.weight" ? nil : base.shape(of: name) }
    func load(_ name: String) throws -> Buffer<Float> { try base.load(name) }
}

/// A small deterministic generator (SplitMix64) for test weights.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    /// Uniform in [-1, 1).
    mutating func uniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49EB_133D_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 23) - 1
    }
}
