import FinchFormats
import Foundation
import XCTest

/// The GGUF writer and the quantizers an export uses: llama.cpp's bytes, and files that read back.
final class GGUFWriterTests: XCTestCase {
    static let quantFixture: String = {
        URL(fileURLWithPath: Fixtures.directory).deletingLastPathComponent()
            .appendingPathComponent("gguf-export/quants.safetensors").path
    }()

    /// Q8_0, Q4_0, Q5_0, Q4_K and Q6_K written byte for byte as ggml's ggml_quantize_chunk writes
    /// them (Scripts/fixtures/make_quant_fixtures.py): normal, heavy-tailed, uniform and edge-case
    /// inputs (zero rows, constant blocks, values on the grid, tiny values, an outlier).
    func testQuantizersWriteLlamaCppsBytes() throws {
        let f = try SafeTensorsFile(path: Self.quantFixture)
        for dist in ["normal", "heavy", "uniform", "edge"] {
            let x = try f.floats("x.\(dist)")
            for (name, type) in [("q8_0", GGMLType.q8_0), ("q4_0", .q4_0), ("q5_0", .q5_0), ("q4_K", .q4_K), ("q6_K", .q6_K)] {
                let expected = [UInt8](try f.bytes("\(name).\(dist)"))
                var out = [UInt8](repeating: 0xAA, count: expected.count)
                x.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBytes { GGMLQuantizer.quantize(xp.baseAddress!, count: x.count, to: type, into: $0) }
                }
                let blocks = expected.count / type.typeSize
                let differing = (0..<blocks).filter { b in out[b * type.typeSize..<(b + 1) * type.typeSize] != expected[b * type.typeSize..<(b + 1) * type.typeSize] }
                XCTAssertEqual(differing.count, 0, "\(name) \(dist): blocks \(differing.prefix(5)) differ from llama.cpp's")
            }
        }
    }

    /// Metadata of every type, tensors of every writable type and a non-default alignment come
    /// back from GGUFFile as written; quantized tensors dequantize to what the quantizer meant.
    func testWrittenFileReadsBack() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.path + "/written.gguf"
        let meta: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string("llama")), ("u8", .uint8(7)), ("i8", .int8(-3)), ("u16", .uint16(65535)),
            ("i16", .int16(-300)), ("u32", .uint32(123456)), ("i32", .int32(-5)), ("u64", .uint64(1 << 40)),
            ("i64", .int64(-(1 << 40))), ("f32", .float32(0.25)), ("f64", .float64(-1.5)), ("yes", .bool(true)),
            ("text", .string("héllo ✓")), ("list", .array([.string("a"), .string("b c")])),
            ("nested", .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])])),
        ]
        var state: UInt64 = 0x9E3779B97F4A7C15
        let values = (0..<(4 * 256)).map { _ -> Float in   // deterministic values in [-1, 1)
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        let types: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K]
        let tensors = types.map { t in
            GGUFWriter.Tensor(name: "t.\(t.name)", type: t, dimensions: [256, 4]) { out in
                values.withUnsafeBufferPointer { GGMLQuantizer.quantize($0.baseAddress!, count: values.count, to: t, into: out) }
            }
        }
        try GGUFWriter.write(to: path, metadata: meta, tensors: tensors, alignment: 64)
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(Array(f.metadataKeys.prefix(meta.count)), meta.map(\.key))
        for (k, v) in meta { XCTAssertEqual(f.metadata[k], v, k) }
        for t in types {
            let info = try XCTUnwrap(f.tensor(named: "t.\(t.name)"))
            XCTAssertEqual(info.type, t)
            XCTAssertEqual(info.dimensions, [256, 4])
            XCTAssertEqual(info.offset % 64, 0)
            let back = try f.dequantize(info)
            let err = zip(back, values).map { abs($0 - $1) }.max()!   // bounds: about one quantization step of values in [-1, 1]
            let bound: Float = [.f32: 0, .f16: 1e-3, .bf16: 4e-3, .q8_0: 5e-3, .q6_K: 2e-2, .q5_0: 7e-2, .q4_K: 0.12, .q4_0: 0.13][t]!
            XCTAssertLessThanOrEqual(err, bound, "\(t.name): max |error| \(err)")
        }
    }

    /// Rows that do not hold whole blocks, duplicate names and empty arrays are refused before
    /// anything is written, naming the file and what is wrong.
    func testBadInputIsRefusedAndNothingIsWritten() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.path + "/bad.gguf"
        let t = GGUFWriter.Tensor(name: "w", type: .q4_K, dimensions: [100, 2]) { _ in XCTFail("not to be filled") }
        XCTAssertThrowsError(try GGUFWriter.write(to: path, metadata: [], tensors: [t])) { e in
            XCTAssertTrue("\(e)".contains("bad.gguf") && "\(e)".contains("whole blocks of 256"), "\(e)")
        }
        let ok = GGUFWriter.Tensor(name: "w", type: .f32, dimensions: [2]) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        XCTAssertThrowsError(try GGUFWriter.write(to: path, metadata: [], tensors: [ok, ok])) { e in
            XCTAssertTrue("\(e)".contains("written twice"), "\(e)")
        }
        XCTAssertThrowsError(try GGUFWriter.write(to: path, metadata: [("empty", .array([]))], tensors: [])) { e in
            XCTAssertTrue("\(e)".contains("empty array"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temporary file is left")
    }
}
