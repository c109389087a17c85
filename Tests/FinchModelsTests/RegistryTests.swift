import FinchCore
import FinchFormats
@testable import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// What Finch does not implement is refused by name: an unknown `model_type` or architecture,
/// an unsupported config option, a missing tensor, a tensor the model would not use.
final class RegistryTests: XCTestCase {
    var scratch = ""

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "finch-registry-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: scratch) }

    /// A copy of a tiny family checkpoint whose config.json is edited by `edit`.
    func copy(_ family: String, edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        let src = Fixtures.path("tiny-\(family)/hf"), dst = scratch + "/\(family)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.copyItem(atPath: src, toPath: dst)
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dst + "/config.json"))) as! [String: Any]
        edit(&cfg)
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dst + "/config.json"))
        return dst
    }

    func assertRefused(_ dir: String, mentions words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try LoadedModel.load(dir), file: file, line: line) { e in
            let text = "\(e)"
            for w in words { XCTAssertTrue(text.contains(w), "'\(text)' does not mention '\(w)'", file: file, line: line) }
        }
    }

    func testUnknownModelTypeIsRefusedWithTheSupportedList() throws {
        let dir = try copy("qwen2") { $0["model_type"] = "falcon"; $0["architectures"] = ["FalconForCausalLM"] }
        assertRefused(dir, mentions: ["'falcon'", "llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2"])
        let none = try copy("qwen2") { $0.removeValue(forKey: "model_type") }
        assertRefused(none, mentions: ["model_type"])
    }

    func testOtherHeadArchitectureIsRefused() throws {
        let dir = try copy("mistral") { $0["architectures"] = ["MistralForSequenceClassification"] }
        assertRefused(dir, mentions: ["MistralForSequenceClassification", "MistralForCausalLM"])
    }

    func testUnsupportedOptionsAreRefusedByName() throws {
        assertRefused(try copy("qwen2") { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0] },
                      mentions: ["rope_type", "yarn", "llama3"])
        assertRefused(try copy("mistral") { $0["hidden_act"] = "gelu" }, mentions: ["hidden_act", "gelu", "silu"])
        assertRefused(try copy("qwen3") { $0["layer_types"] = ["full_attention", "chunked_attention"] },
                      mentions: ["layer_types", "chunked_attention"])
        assertRefused(try copy("qwen2") { $0["mlp_bias"] = true }, mentions: ["mlp_bias"])
        assertRefused(try copy("gpt2") { $0["activation_function"] = "relu" }, mentions: ["activation_function", "relu", "gelu (erf)"])
        assertRefused(try copy("gemma3") { $0["final_logit_softcapping"] = 30.0 }, mentions: ["final_logit_softcapping"])
    }

    func testMissingTensorIsNamed() throws {
        let dir = try copy("qwen3")
        let st = try SafeTensorsFile(path: dir + "/model.safetensors")
        let drop = "model.layers.1.self_attn.k_norm.weight"
        try SafeTensorsWriter.write(try st.tensorNames.filter { $0 != drop }.map { n in
            .float32(name: n, shape: st.info(n)!.shape, values: try st.floats(n))
        }, metadata: ["format": "pt"], to: dir + "/model.safetensors")
        assertRefused(dir, mentions: [drop, "missing"])
    }

    func testUnusedTensorIsNamed() throws {
        // A Qwen3 checkpoint (q/k norms) read as Qwen2 computes without its q/k norms: refused.
        let dir = try copy("qwen3") { $0["model_type"] = "qwen2"; $0["architectures"] = ["Qwen2ForCausalLM"]
            $0.removeValue(forKey: "attention_bias") }
        assertRefused(dir, mentions: ["k_norm", "does not use"])
        // And a stray tensor in an otherwise complete checkpoint.
        let extra = try copy("mistral")
        let st = try SafeTensorsFile(path: extra + "/model.safetensors")
        var entries = try st.tensorNames.map { n in SafeTensorsWriter.Entry.float32(name: n, shape: st.info(n)!.shape, values: try st.floats(n)) }
        entries.append(.float32(name: "model.layers.0.self_attn.rotary_scale", shape: [2], values: [1, 2]))
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: extra + "/model.safetensors")
        assertRefused(extra, mentions: ["model.layers.0.self_attn.rotary_scale"])
    }

    /// The hub's `gpt2` names its tensors without `transformer.` (saved from the base model): it
    /// loads to the same logits, and its old mask buffers (`h.N.attn.bias`) are known and skipped.
    func testGPT2WithoutBasePrefixLoads() throws {
        let dir = try copy("gpt2")
        let st = try SafeTensorsFile(path: dir + "/model.safetensors")
        var entries = try st.tensorNames.map { n in
            SafeTensorsWriter.Entry.float32(name: String(n.dropFirst("transformer.".count)), shape: st.info(n)!.shape,
                                            values: try st.floats(n))
        }
        entries.append(.float32(name: "h.0.attn.bias", shape: [1, 1, 2, 2], values: [1, 0, 1, 1]))
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: dir + "/model.safetensors")
        let (e, ref) = try FamilyTests.expected("gpt2")
        let lm = try LoadedModel.load(dir)
        XCTAssertLessThan(maxAbsDiff(try FamilyTests.logits(lm.causal, e.sequences[1]), try ref.floats("seq1.logits")), 1e-4)
    }

    func testUnknownGGUFArchitectureListsSupported() throws {
        let gguf = GGUFWriterForTests.minimal(architecture: "gpt-neox")
        let path = scratch + "/x.gguf"
        try Data(gguf).write(to: URL(fileURLWithPath: path))
        assertRefused(path, mentions: ["'gpt-neox'", "llama", "qwen2", "qwen3"])
    }

    /// The sliding window is used: without it, the Mistral fixture's long sequences compute other logits.
    func testSlidingWindowMatters() throws {
        let dir = Fixtures.path("tiny-mistral/hf")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))
        var config = try MistralConfig(json: data, path: dir)
        let (e, ref) = try FamilyTests.expected("mistral")
        let windowed = try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: .f32)
        config.slidingWindow = nil
        let full = try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: config, dtype: .f32)
        let want = try ref.floats("seq1.logits")
        XCTAssertLessThan(maxAbsDiff(try FamilyTests.logits(windowed, e.sequences[1]), want), 1e-4)
        XCTAssertGreaterThan(maxAbsDiff(try FamilyTests.logits(full, e.sequences[1]), want), 1e-2)
    }
}

/// A GGUF file with only a header and `general.architecture`.
enum GGUFWriterForTests {
    static func minimal(architecture: String) -> [UInt8] {
        var b: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
        u32(3); u64(0); u64(1)           // version, tensors, metadata entries
        str("general.architecture"); u32(8); str(architecture)   // type 8 = string
        return b
    }
}
