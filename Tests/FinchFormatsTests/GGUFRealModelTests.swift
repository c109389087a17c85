import Foundation
import XCTest
import FinchFormats
import FinchTestSupport

/// Reads the real SmolLM2-135M-Instruct Q4_1 GGUF (skipped with the reason when it is not
/// fetched, a failure under CI).
final class GGUFRealModelTests: XCTestCase {
    func openModel() throws -> GGUFFile {
        try GGUFFile(path: FinchTestSupport.Fixtures.smolLM2())
    }

    func testHeaderAndMetadata() throws {
        let start = Date()
        let f = try openModel()
        let openMs = Date().timeIntervalSince(start) * 1000
        print("opened \(f.tensors.count) tensors, \(f.metadataKeys.count) keys in \(String(format: "%.1f", openMs)) ms")
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 272)
        XCTAssertEqual(f.metadataKeys.count, 33)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.dataOffset, 1_785_664)
        XCTAssertEqual(f.metadata["general.architecture"]?.stringValue, "llama")
        XCTAssertEqual(f.metadata["llama.block_count"]?.intValue, 30)
        XCTAssertEqual(f.metadata["llama.embedding_length"]?.intValue, 576)
        XCTAssertEqual(f.metadata["llama.attention.head_count"]?.intValue, 9)
        XCTAssertEqual(f.metadata["llama.attention.head_count_kv"]?.intValue, 3)
        XCTAssertEqual(f.metadata["llama.rope.freq_base"]?.doubleValue, 100000)
        XCTAssertEqual(f.metadata["llama.attention.layer_norm_rms_epsilon"], .float32(1e-5))
        XCTAssertEqual(f.metadata["tokenizer.ggml.model"]?.stringValue, "gpt2")
        XCTAssertEqual(f.metadata["tokenizer.ggml.tokens"]?.stringArray?.count, 49152)
        XCTAssertEqual(f.metadata["tokenizer.ggml.merges"]?.stringArray?.count, 48900)
        XCTAssertEqual(f.metadata["tokenizer.ggml.token_type"]?.intArray?.count, 49152)
        XCTAssertEqual(f.metadata["tokenizer.ggml.add_bos_token"]?.boolValue, false)
        XCTAssertEqual(f.metadata["tokenizer.ggml.eos_token_id"]?.intValue, 2)
        XCTAssertEqual(f.metadata["general.languages"]?.stringArray, ["en"])
        XCTAssertTrue(f.metadata["tokenizer.chat_template"]?.stringValue?.contains("<|im_start|>") ?? false)

        var counts: [GGMLType: Int] = [:]
        for t in f.tensors { counts[t.type, default: 0] += 1 }
        XCTAssertEqual(counts, [.q4_1: 210, .f32: 61, .q8_0: 1])
        let emb = try XCTUnwrap(f.tensor(named: "token_embd.weight"))
        XCTAssertEqual(emb.type, .q8_0)
        XCTAssertEqual(emb.dimensions, [576, 49152])
        XCTAssertEqual(f.tensors.reduce(0) { $0 + $1.elementCount }, 134_515_008)
        XCTAssertNotNil(f.tensor(named: "blk.29.ffn_down.weight"))
        XCTAssertNil(f.tensor(named: "output.weight"))  // tied embeddings
    }

    /// Dequantizes the whole model and compares per-tensor digests with gguf-py's output
    /// (smollm2_q4_1_digests.json, made by Scripts/fixtures/make_format_fixtures.py).
    func testWholeModelMatchesGGUFPy() throws {
        let f = try openModel()
        let digestsPath = Fixtures.path("smollm2_q4_1_digests.json")
        let data = try Data(contentsOf: URL(fileURLWithPath: digestsPath))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], digestsPath)
        let entries = try XCTUnwrap(json["tensors"] as? [[String: Any]], "\(digestsPath): no tensors")
        XCTAssertEqual(entries.count, f.tensors.count)
        let maxCount = f.tensors.map(\.elementCount).max() ?? 0
        var buffer = [Float](repeating: 0, count: maxCount)
        var total = 0
        var seconds = 0.0
        for e in entries {
            let name = e["name"] as! String
            let t = try XCTUnwrap(f.tensor(named: name), name)
            XCTAssertEqual(t.type.name, e["type"] as? String, name)
            XCTAssertEqual(t.dimensions, (e["dims"] as? [Int]) ?? [], name)
            let n = t.elementCount
            let start = Date()
            try buffer.withUnsafeMutableBufferPointer { try f.dequantize(t, into: UnsafeMutableBufferPointer(rebasing: $0[0..<n])) }
            seconds += Date().timeIntervalSince(start)
            total += n
            let d = buffer.withUnsafeBufferPointer { Self.digest(UnsafeBufferPointer(rebasing: $0[0..<n])) }
            XCTAssertEqual(String(d), e["digest"] as? String, "\(name): dequantized values differ from gguf-py")
        }
        print("dequantized \(total) values in \(String(format: "%.0f", seconds * 1000)) ms (\(String(format: "%.0f", Double(total) / seconds / 1e6)) M values/s)")
    }

    /// sum(bits[i] * (i * 2654435761 + 1)) mod 2^64, as in make_fixtures.py.
    static func digest(_ x: UnsafeBufferPointer<Float>) -> UInt64 {
        var s: UInt64 = 0
        for i in 0..<x.count {
            s = s &+ UInt64(x[i].bitPattern) &* (UInt64(i) &* 2_654_435_761 &+ 1)
        }
        return s
    }
}
