import XCTest
import FinchFormats

final class SafeTensorsWriteTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.cleanup() }

    /// Writing the tensors of the Python-made file (in any order) reproduces it byte for byte.
    func testByteIdenticalToReferenceWriter() throws {
        let refPath = Fixtures.path("all_dtypes.safetensors")
        let ref = try SafeTensorsFile(path: refPath)
        let entries = ref.tensors.reversed().map { t in
            SafeTensorsWriter.Entry(name: t.name, dtype: t.dtype, shape: t.shape, bytes: Array(ref.bytes(of: t)))
        }
        let out = tmp.file("copy.safetensors")
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: out)
        XCTAssertEqual(readBytes(out), readBytes(refPath))
    }

    func testRoundTrip() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 1e-8, .infinity, 3.14159]
        let entries: [SafeTensorsWriter.Entry] = [
            .float32(name: "a.f32", shape: [2, 4], values: values),
            .float16(name: "a.f16", shape: [8], values: values),
            .bfloat16(name: "a.bf16", shape: [4, 2], values: values),
            .init(name: "ids", dtype: .i64, shape: [3], bytes: [Int64(-1), 0, Int64.max].withUnsafeBytes { Array($0) }),
            .init(name: "scalar", dtype: .f32, shape: [], bytes: Float(7).bitPattern.littleEndianBytes),
            .init(name: "empty", dtype: .u8, shape: [0], bytes: []),
            .init(name: "naïve \"quoted\"\n\u{1}", dtype: .u8, shape: [2], data: Data([9, 8])),
        ]
        let path = tmp.file("rt.safetensors")
        let meta = ["format": "pt", "note": "tab\there \"q\" ünï"]
        try SafeTensorsWriter.write(entries, metadata: meta, to: path)
        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.metadata, meta)
        XCTAssertEqual(Set(f.tensorNames), Set(entries.map(\.name)))
        XCTAssertEqual(f.dataOffset % 8, 0, "header padded to 8 bytes")
        for t in f.tensors {
            XCTAssertEqual(t.byteRange.lowerBound % t.dtype.byteSize, 0, "\(t.name) aligned to its element size")
        }
        XCTAssertNil(firstBitDifference(try f.floats("a.f32"), values))
        XCTAssertNil(firstBitDifference(try f.floats("a.f16"), values.map { Float(f16Bits: $0.f16Bits) }))
        XCTAssertNil(firstBitDifference(try f.floats("a.bf16"), values.map { Float(bf16Bits: $0.bf16Bits) }))
        XCTAssertEqual(f.info("a.bf16")?.shape, [4, 2])
        XCTAssertEqual(try f.floats("ids"), [-1, 0, Float(Int64.max)])
        XCTAssertEqual(try f.floats("scalar"), [7])
        XCTAssertEqual(try f.floats("empty"), [])
        XCTAssertEqual(Array(try f.bytes("naïve \"quoted\"\n\u{1}")), [9, 8])
        XCTAssertEqual(f.info("ids")?.dtype, .i64)
    }

    func testAtomicWriteLeavesNoTemporaryFiles() throws {
        let path = tmp.file("model.safetensors")
        try SafeTensorsWriter.write([.float32(name: "x", shape: [1], values: [1])], to: path)
        XCTAssertEqual(tmp.contents(), ["model.safetensors"])
        // Overwrite in place.
        try SafeTensorsWriter.write([.float32(name: "y", shape: [2], values: [2, 3])], to: path)
        XCTAssertEqual(tmp.contents(), ["model.safetensors"])
        XCTAssertEqual(try SafeTensorsFile(path: path).tensorNames, ["y"])
        XCTAssertEqual(try SafeTensorsFile(path: path).metadata, [:])

        // A failing write leaves the old file intact and no temporary behind.
        assertFormatError(try SafeTensorsWriter.write([.init(name: "z", dtype: .f32, shape: [3], bytes: [0, 0, 0, 0])], to: path),
                          path: path) {
            if case .dtypeSizeMismatch(_, "z", 12, 4) = $0 { return true }
            return false
        }
        XCTAssertEqual(tmp.contents(), ["model.safetensors"])
        XCTAssertEqual(try SafeTensorsFile(path: path).tensorNames, ["y"])
    }

    func testWriteIntoMissingDirectoryFails() {
        let path = tmp.file("no/such/dir/x.safetensors")
        assertFormatError(try SafeTensorsWriter.write([.float32(name: "x", shape: [1], values: [1])], to: path), path: path) {
            if case .io = $0 { return true }
            return false
        }
    }

    func testInvalidInput() {
        let path = tmp.file("bad.safetensors")
        let cases: [([SafeTensorsWriter.Entry], String)] = [
            ([.float32(name: "a", shape: [1], values: [1]), .float32(name: "a", shape: [1], values: [2])], "twice"),
            ([.float32(name: "", shape: [1], values: [1])], "invalid tensor name"),
            ([.float32(name: "__metadata__", shape: [1], values: [1])], "invalid tensor name"),
            ([.init(name: "neg", dtype: .f32, shape: [-1], bytes: [])], "invalid shape"),
        ]
        for (entries, needle) in cases {
            assertFormatError(try SafeTensorsWriter.write(entries, to: path), path: path) {
                if case .invalidInput(_, let r) = $0 { return r.contains(needle) }
                return false
            }
        }
        XCTAssertEqual(tmp.contents(), [])
    }
}

extension UInt32 {
    var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}
