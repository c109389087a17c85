import FinchCore
import FinchFormats
@testable import FinchModels
import FinchTestSupport
import FinchTokenizer
import Foundation
import XCTest

/// T5 exported as llama.cpp's `t5` GGUF, on the tiny T5 v1.1 fixture with
/// relative_attention_max_distance 128 (llama.cpp's fixed distance): the file's names, shapes,
/// types and keys are llama.cpp's converter's, the weights read back compute the model, and
/// Finch on the file gives what llama.cpp gave on it (Tests/Fixtures/tiny-t5/v1_1/llamacpp-gguf.json,
/// recorded by Scripts/checks/export/t5_llamacpp_check.sh --write-fixture).
final class T5GGUFTests: XCTestCase {
    struct Pair: Decodable { let source: [Int]; let target: [Int] }
    struct Expected: Decodable { let pairs: [Pair] }
    struct Recorded: Decodable {
        struct PerType: Decodable { let greedy: [[Int]]?; let logits: [[[Float]]]? }   // types.tokenizer has neither
        let types: [String: PerType]
        let llama_cpp_python: String
    }
    var scratch: String!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5gguf-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// The v1.1 fixture with relative_attention_max_distance 128, as the check script makes it.
    func model128() throws -> LoadedModel {
        let src = Fixtures.path("tiny-t5/v1_1/hf"), dir = scratch + "/hf128"
        try FileManager.default.copyItem(atPath: src, toPath: dir)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        config["relative_attention_max_distance"] = 128
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        return try LoadedModel.load(dir)
    }

    func export(_ lm: LoadedModel, _ type: GGUFExportType) throws -> (String, GGUFExport) {
        let path = scratch + "/t5-\(type.rawValue).gguf"
        let m = try lm.model.ggufExportable(path: lm.path)
        let r = try m.saveGGUF(to: path, tokenizer: lm.tokenizer.ggufMetadata(vocabSize: m.vocabSize), type: type, name: "tiny-t5")
        return (path, r)
    }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/v1_1/expected.json"))))
    }

    /// Greedy tokens as llama.cpp's check decodes them: at most 32, stopping after </s> (1).
    func greedy(_ m: any LanguageModel, _ source: [Int]) throws -> [Int] {
        let s = try m.start([source], capacity: 32)[0]
        var input = s.input, out: [Int] = []
        while out.count < 32 {
            let logits = try m.step([StepInput(tokens: input, state: s.state)])
            let row = Array(logits.row(0))   // a copy: the row is a view into `logits`
            let t = row.indices.max { row[$0] < row[$1] }!
            out.append(t)
            if t == 1 { break }
            input = [t]
        }
        return out
    }

    func testFileHasLlamaCppsT5NamesShapesTypesAndKeys() throws {
        let lm = try model128()
        let t5 = try XCTUnwrap(lm.model as? T5Model)
        let (path, result) = try export(lm, .f16)
        XCTAssertEqual(result.architecture, "t5")
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.metadata["general.architecture"]?.stringValue, "t5")
        let keys: [(String, Int)] = [("t5.context_length", 512), ("t5.embedding_length", 64), ("t5.feed_forward_length", 96),
                                     ("t5.block_count", 2), ("t5.decoder_block_count", 2), ("t5.attention.head_count", 4),
                                     ("t5.attention.key_length", 16), ("t5.attention.value_length", 16),
                                     ("t5.attention.relative_buckets_count", 8), ("t5.decoder_start_token_id", 0),
                                     ("general.file_type", 1)]
        for (k, v) in keys { XCTAssertEqual(f.metadata[k]?.intValue, v, k) }
        XCTAssertEqual(f.metadata["t5.attention.layer_norm_rms_epsilon"]?.doubleValue ?? 0, 1e-6, accuracy: 1e-12)
        // Every tensor llama.cpp's t5 loader asks for, and no other; ne reversed from PyTorch's shape.
        var want: [String: [Int]] = ["token_embd.weight": [64, 188], "output.weight": [64, 188],
                                     "enc.output_norm.weight": [64], "dec.output_norm.weight": [64],
                                     "enc.blk.0.attn_rel_b.weight": [4, 8], "dec.blk.0.attn_rel_b.weight": [4, 8]]
        for i in 0..<2 {
            for (stack, cross) in [("enc", false), ("dec", true)] {
                let b = "\(stack).blk.\(i)."
                for n in ["attn_q", "attn_k", "attn_v"] + (cross ? ["cross_attn_q", "cross_attn_k", "cross_attn_v"] : []) { want[b + n + ".weight"] = [64, 64] }
                want[b + "attn_o.weight"] = [64, 64]
                if cross { want[b + "cross_attn_o.weight"] = [64, 64]; want[b + "cross_attn_norm.weight"] = [64] }
                want[b + "attn_norm.weight"] = [64]; want[b + "ffn_norm.weight"] = [64]
                want[b + "ffn_gate.weight"] = [64, 96]; want[b + "ffn_up.weight"] = [64, 96]; want[b + "ffn_down.weight"] = [96, 64]
            }
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, $0.dimensions) }), want)
        for t in f.tensors {
            // f16 file: norms f32, every 2-D tensor (the position tables too) f16, as the converter writes.
            XCTAssertEqual(t.type, t.dimensions.count == 1 ? .f32 : .f16, t.name)
        }
        XCTAssertEqual(result.tensorCount, want.count)
        // The tokenizer as llama.cpp's t5 (UGM) vocabulary, padded to the model's 188 rows.
        XCTAssertEqual(f.metadata["tokenizer.ggml.model"]?.stringValue, "t5")
        XCTAssertEqual(f.metadata["tokenizer.ggml.pre"]?.stringValue, "default")
        let tokens = try XCTUnwrap(f.metadata["tokenizer.ggml.tokens"]?.arrayValue)
        let types = try XCTUnwrap(f.metadata["tokenizer.ggml.token_type"]?.arrayValue).map { $0.intValue! }
        let scores = try XCTUnwrap(f.metadata["tokenizer.ggml.scores"]?.arrayValue)
        XCTAssertEqual(tokens.count, t5.vocabSize)
        XCTAssertEqual(scores.count, t5.vocabSize)
        XCTAssertEqual(tokens[0...3].map { $0.stringValue! }, ["<pad>", "</s>", "<unk>", "\u{2581}"])
        XCTAssertEqual(Array(types[0...3]), [3, 3, 2, 1])
        XCTAssertEqual(tokens[180].stringValue, "<extra_id_3>")
        XCTAssertEqual(types[180], 4)   // user-defined, as llama.cpp's converter writes added tokens
        XCTAssertEqual(tokens[187].stringValue, "[PAD187]")
        XCTAssertEqual(types[187], 5)
        XCTAssertEqual(f.metadata["tokenizer.ggml.add_eos_token"], .bool(true))
        XCTAssertEqual(f.metadata["tokenizer.ggml.add_bos_token"], .bool(false))
        XCTAssertEqual(f.metadata["tokenizer.ggml.add_space_prefix"], .bool(true))
        XCTAssertEqual(f.metadata["tokenizer.ggml.remove_extra_whitespaces"], .bool(true))
        XCTAssertEqual(f.metadata["tokenizer.ggml.eos_token_id"]?.intValue, 1)
        XCTAssertEqual(f.metadata["tokenizer.ggml.unknown_token_id"]?.intValue, 2)
        XCTAssertEqual(f.metadata["tokenizer.ggml.padding_token_id"]?.intValue, 0)
        // The charsmap: tokenizer.json's bytes, as uint8.
        let tj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: lm.path + "/tokenizer.json"))) as! [String: Any]
        let b64 = (tj["normalizer"] as! [String: Any])["precompiled_charsmap"] as! String
        let charsmap = try XCTUnwrap(f.metadata["tokenizer.ggml.precompiled_charsmap"]?.arrayValue)
        XCTAssertEqual(charsmap.map { v -> UInt8 in if case .uint8(let b) = v { return b } else { return 0 } }, [UInt8](Data(base64Encoded: b64)!))
        XCTAssertTrue(charsmap.allSatisfy { $0.type == .uint8 })

        // Quantized: the position tables stay f32 (llama-quantize leaves attn_rel_b), the head takes q8_0
        // (its 64-wide rows hold no q6_K block), the other 2-D weights q4_0.
        let (q, _) = try export(lm, .q4_0)
        for t in try GGUFFile(path: q).tensors {
            let want: GGMLType = t.dimensions.count == 1 || t.name.hasSuffix("attn_rel_b.weight") ? .f32 : t.name == "output.weight" ? .q8_0 : .q4_0
            XCTAssertEqual(t.type, want, t.name)
        }
    }

    func testFileReadBackComputesTheModelWithTheAdapterFoldedIn() throws {
        let lm = try model128()
        let e = try expected()
        let p = e.pairs[0]
        let base = try lm.model.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits.flatMap { $0 }
        // An active, unmerged adapter is folded into the written weights.
        try lm.model.loadAdapter(directory: Fixtures.path("tiny-t5/v1_1/peft-all"))
        let adapted = try lm.model.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits.flatMap { $0 }
        XCTAssertGreaterThan(zip(base, adapted).map { abs($0 - $1) }.max()!, 1e-3, "the adapter must change the model")
        let (path, result) = try export(lm, .f32)
        XCTAssertEqual(result.adapters, ["default"])
        let back = try ModelRegistry.model(gguf: GGUFFile(path: path)).model
        XCTAssertTrue(back is T5Model)
        let got = try back.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits.flatMap { $0 }
        let d = zip(got, adapted).map { abs($0 - $1) }.max()!
        print("[t5 gguf] f32 file read back vs the adapter model: max |logit diff| = \(d)")
        XCTAssertLessThan(d, 1e-5)
    }

    /// Original T5 (tied head, d_model^-0.5 rescale): the file holds an `output` tensor with the
    /// rescale in it, so the logits read back (and llama.cpp's, which has no rescale) are the model's.
    func testRescaledTiedHeadIsWrittenAsAScaledOutput() throws {
        let dir = scratch + "/orig128"
        try FileManager.default.copyItem(atPath: Fixtures.path("tiny-t5/original/hf"), toPath: dir)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        config["relative_attention_max_distance"] = 128
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let lm = try LoadedModel.load(dir)
        let (path, _) = try export(lm, .f32)
        let f = try GGUFFile(path: path)
        XCTAssertNotNil(f.tensor(named: "output.weight"))
        XCTAssertNil(f.tensor(named: "enc.blk.0.ffn_gate.weight"))
        XCTAssertEqual(f.metadata["t5.decoder_block_count"]?.intValue, 3)
        let p = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/original/expected.json")))).pairs[0]
        let want = try lm.model.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits.flatMap { $0 }
        let got = try ModelRegistry.model(gguf: f).model.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits.flatMap { $0 }
        XCTAssertLessThan(zip(got, want).map { abs($0 - $1) }.max()!, 1e-5)
    }

    /// What llama.cpp computes differently is refused by name.
    func testRefusals() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-t5/v1_1/hf"))   // max distance 16
        XCTAssertThrowsError(try export(lm, .f32)) { error in
            XCTAssertTrue("\(error)".contains("relative_attention_max_distance is 16"), "\(error)")
        }
        XCTAssertThrowsError(try export(try model128(), .q4_k_m)) { error in
            XCTAssertTrue("\(error)".contains("q4_k_m"), "\(error)")
        }
        XCTAssertEqual("\(ExportError.noGGUFWriter(path: "m", architecture: "bert"))".contains("no GGUF writer for the bert architecture"), true)
    }

    /// Finch on the f32 and f16 files it wrote gives llama.cpp's greedy tokens, and on the f32 file its
    /// teacher-forced logits within `bound` (llama.cpp on the quantized files rounds its activations to
    /// 8-bit blocks, Finch does not: their greedy tokens are the fixture's record, not compared here).
    func testFinchOnTheFileGivesLlamaCppsAnswers() throws {
        let rec = try JSONDecoder().decode(Recorded.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-t5/v1_1/llamacpp-gguf.json"))))
        let lm = try model128()
        let e = try expected()
        for type in [GGUFExportType.f32, .f16] {
            let r = try XCTUnwrap(rec.types[type.rawValue], type.rawValue)
            let (path, _) = try export(lm, type)
            let back = try ModelRegistry.model(gguf: GGUFFile(path: path)).model
            for (i, p) in e.pairs.enumerated() {
                XCTAssertEqual(try greedy(back, p.source), r.greedy?[i], "\(type.rawValue) pair \(i): Finch vs llama.cpp \(rec.llama_cpp_python)")
                guard type == .f32, let ll = r.logits?[i] else { continue }
                let got = try back.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits
                let d = zip(got.flatMap { $0 }, ll.flatMap { $0 }).map { abs($0 - $1) }.max()!
                print("[t5 gguf] \(type.rawValue) pair \(i): Finch on the file vs llama.cpp: max |logit diff| = \(d)")
                XCTAssertLessThan(d, Self.bound[type]!, "\(type.rawValue) pair \(i)")
            }
        }
    }

    /// A quantized T5 file kept in its blocks computes what it computes dequantized, bit for bit.
    func testQuantizedFileKeptInItsBlocksEqualsItDequantized() throws {
        let lm = try model128()
        let e = try expected()
        for type in [GGUFExportType.q8_0, .q4_0] {
            let (path, _) = try export(lm, type)
            let blocks = try ModelRegistry.model(gguf: GGUFFile(path: path), keepBlocks: true).model
            let dense = try ModelRegistry.model(gguf: GGUFFile(path: path)).model
            XCTAssertTrue(blocks.weightSummary.contains("blocks"), blocks.weightSummary)
            XCTAssertLessThan(blocks.weightBytes, dense.weightBytes)
            for p in e.pairs {
                let a = try blocks.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits
                let b = try dense.teacherForcedLogits(prompt: p.source, then: Array(p.target.dropLast())).logits
                XCTAssertEqual(a, b, type.rawValue)
                XCTAssertEqual(try greedy(blocks, p.source), try greedy(dense, p.source), type.rawValue)
            }
        }
    }

    /// ~5x the 2.0e-4 llama.cpp's f32 logits are from transformers' (the fixture's `measured`; ggml's GELU
    /// reads an f16 table).
    static let bound: [GGUFExportType: Float] = [.f32: 1e-3]
}
