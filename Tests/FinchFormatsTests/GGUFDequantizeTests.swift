import XCTest
import FinchFormats

/// Bitwise parity of every dequantizer with gguf-py (expected values in quants_expected.safetensors).
final class GGUFDequantizeTests: XCTestCase {
    func testEveryTypeMatchesGGUFPyBitwise() throws {
        let file = try GGUFFile(path: Fixtures.path("quants.gguf"))
        let expected = try SafeTensorsFile(path: Fixtures.path("quants_expected.safetensors"))
        XCTAssertEqual(file.version, 3)
        var covered = Set<GGMLType>()
        for t in file.tensors {
            guard let info = expected.info(t.name) else {
                XCTFail("no expected values for \(t.name)")
                continue
            }
            XCTAssertEqual(t.dimensions, info.shape.reversed(), "\(t.name): ggml dims are the reversed numpy shape")
            XCTAssertEqual(t.shape, info.shape)
            XCTAssertEqual(t.byteCount, t.elementCount / t.type.blockSize * t.type.typeSize)
            XCTAssertEqual(file.rawBytes(t).count, t.byteCount)
            let got = try file.dequantize(t)
            let want = try expected.floats(t.name)
            if let i = firstBitDifference(got, want) {
                XCTFail("\(t.name) (\(t.type.name)): element \(i) differs: got \(i < got.count ? got[i] : .nan) want \(i < want.count ? want[i] : .nan)")
            }
            covered.insert(t.type)
        }
        let required: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K,
                                       .q4_K, .q5_K, .q6_K, .q8_K, .iq4_nl, .iq4_xs, .tq1_0, .tq2_0, .mxfp4,
                                       .i8, .i16, .i32, .i64, .f64]
        XCTAssertEqual(covered.intersection(required), required, "missing: \(required.subtracting(covered))")
    }

    func testDequantizeIntoBuffer() throws {
        let file = try GGUFFile(path: Fixtures.path("quants.gguf"))
        let t = try XCTUnwrap(file.tensor(named: "q4_K"))
        let whole = try file.dequantize(t)
        var out = [Float](repeating: .nan, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { try file.dequantize(t, into: $0) }
        XCTAssertNil(firstBitDifference(whole, out))

        var small = [Float](repeating: 0, count: t.elementCount - 1)
        assertFormatError(try small.withUnsafeMutableBufferPointer { try file.dequantize(t, into: $0) },
                          path: file.path) {
            if case .outputSizeMismatch(_, "q4_K", t.elementCount, t.elementCount - 1) = $0 { return true }
            return false
        }
    }

    func testThreeAndOneDimensionalTensors() throws {
        let file = try GGUFFile(path: Fixtures.path("quants.gguf"))
        XCTAssertEqual(file.tensor(named: "q8_0_3d")?.dimensions, [64, 3, 2])
        XCTAssertEqual(file.tensor(named: "q4_0_1d")?.dimensions, [96])
        XCTAssertEqual(file.tensor(named: "q4_0_1d")?.elementCount, 96)
    }

    /// Large tensors are converted in parallel chunks; the result must equal the serial path
    /// (small tensors holding the same blocks) for every block-quantized type.
    func testParallelMatchesSerial() throws {
        let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .f16, .bf16]
        let tmp = TempDir()
        defer { tmp.cleanup() }
        var rng = TestRNG(seed: 7)
        for type in types {
            let pieces = 16
            let blocksPerPiece = max(1, 8192 / type.blockSize)  // whole tensor: 131072 elements
            let pieceElements = blocksPerPiece * type.blockSize
            var pieceBytes: [[UInt8]] = []
            for _ in 0..<pieces {
                var bytes = rng.bytes(blocksPerPiece * type.typeSize)
                if type.isQuantized { Self.saneScales(&bytes, type) }
                pieceBytes.append(bytes)
            }
            var b = GGUFBuilder()
            b.tensors.append(.init(name: "big", dims: [UInt64(pieceElements), UInt64(pieces)], type: type.rawValue,
                                   data: pieceBytes.flatMap { $0 }))
            for (i, bytes) in pieceBytes.enumerated() {
                b.tensors.append(.init(name: "piece\(i)", dims: [UInt64(pieceElements)], type: type.rawValue, data: bytes))
            }
            let path = tmp.write("\(type.name).gguf", b.bytes)
            let file = try GGUFFile(path: path)
            let big = try file.dequantize(file.tensor(named: "big")!)
            var serial: [Float] = []
            for i in 0..<pieces { serial += try file.dequantize(file.tensor(named: "piece\(i)")!) }
            XCTAssertNil(firstBitDifference(big, serial), "\(type.name): parallel result differs from serial")
        }
    }

    /// Dequantization throughput on a 16 M-element Q4_K tensor (printed; a loose bound only).
    func testDequantizeThroughput() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        var rng = TestRNG(seed: 11)
        let type = GGMLType.q4_K
        let blocks = 65536
        var bytes = rng.bytes(blocks * type.typeSize)
        Self.saneScales(&bytes, type)
        var b = GGUFBuilder()
        b.tensors.append(.init(name: "w", dims: [4096, UInt64(blocks * 256 / 4096)], type: type.rawValue, data: bytes))
        let file = try GGUFFile(path: tmp.write("big.gguf", b.bytes))
        let t = file.tensors[0]
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { try file.dequantize(t, into: $0) }  // warm up
        let start = Date()
        try out.withUnsafeMutableBufferPointer { try file.dequantize(t, into: $0) }
        let secs = Date().timeIntervalSince(start)
        print("Q4_K dequantize: \(t.elementCount) values in \(String(format: "%.1f", secs * 1000)) ms = \(String(format: "%.0f", Double(t.elementCount) / secs / 1e6)) M values/s")
        XCTAssertLessThan(secs, 5)
    }

    /// Overwrites each block's f16 scale fields with small finite values so outputs are finite.
    static func saneScales(_ bytes: inout [UInt8], _ type: GGMLType) {
        let offsets: [Int]
        switch type {
        case .q4_0, .q8_0, .q5_0, .iq4_nl: offsets = [0]
        case .q4_1, .q5_1, .q4_K, .q5_K, .iq4_xs: offsets = [0, 2]
        case .q2_K: offsets = [80, 82]
        case .q3_K: offsets = [108]
        case .q6_K: offsets = [208]
        default: offsets = []
        }
        let half: UInt16 = 0x2e66  // ~0.1
        for blk in stride(from: 0, to: bytes.count, by: type.typeSize) {
            for o in offsets {
                bytes[blk + o] = UInt8(half & 0xff)
                bytes[blk + o + 1] = UInt8(half >> 8) ^ (bytes[blk + o + 1] & 0x80)
            }
        }
    }
}
