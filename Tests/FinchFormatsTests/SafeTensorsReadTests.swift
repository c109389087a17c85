import XCTest
import FinchFormats

final class SafeTensorsReadTests: XCTestCase {
    /// A file written by the Python `safetensors` package with every dtype reads bit-exactly.
    func testAllDTypesFromPythonPackage() throws {
        let f = try SafeTensorsFile(path: Fixtures.path("all_dtypes.safetensors"))
        let expected = try SafeTensorsFile(path: Fixtures.path("all_dtypes_expected.safetensors"))
        XCTAssertEqual(f.metadata, ["format": "pt"])
        // Header order, as the reference writer lays tensors out (dtype descending, then name).
        XCTAssertEqual(f.tensorNames, ["t_u64", "t_i64", "t_f64", "t_empty", "t_f32", "t_scalar", "t_u32", "t_i32",
                                       "t_bf16", "t_f16", "t_u16", "t_i16", "t_f8_e4m3", "t_f8_e5m2", "t_i8", "t_u8", "t_bool"])
        XCTAssertEqual(Set(f.tensors.map(\.dtype)), Set(SafeTensorsDType.allCases))
        for name in f.tensorNames {
            let info = try XCTUnwrap(f.info(name))
            let want = try XCTUnwrap(expected.info(name))
            XCTAssertEqual(info.shape, want.shape, name)
            XCTAssertEqual(info.byteRange.count, info.elementCount * info.dtype.byteSize, name)
            let got = try f.floats(name)
            let ref = try expected.floats(name)
            if let i = firstBitDifference(got, ref) {
                XCTFail("\(name) (\(info.dtype.rawValue)): element \(i): got \(got[i]) (\(String(got[i].bitPattern, radix: 16))) want \(ref[i]) (\(String(ref[i].bitPattern, radix: 16)))")
            }
            var into = [Float](repeating: .nan, count: info.elementCount)
            try into.withUnsafeMutableBufferPointer { try f.floats(name, into: $0) }
            XCTAssertNil(firstBitDifference(into, ref), name)
        }
        XCTAssertEqual(Array(try f.bytes("t_u8")), (0...255).map { UInt8($0) })
        XCTAssertEqual(f.info("t_scalar")?.shape, [])
        XCTAssertEqual(f.info("t_scalar")?.elementCount, 1)
        XCTAssertEqual(try f.floats("t_scalar"), [2.5])
        XCTAssertEqual(f.info("t_empty")?.shape, [0, 3])
        XCTAssertEqual(try f.floats("t_empty"), [])
        XCTAssertEqual(f.info("t_u64")?.byteRange, 0..<24)
        XCTAssertEqual(f.dataOffset, 8 + 1104)
        XCTAssertNil(f.info("nope"))
        XCTAssertFalse(f.contains("nope"))
    }

    func testMissingTensorAndOutputSize() throws {
        let path = Fixtures.path("all_dtypes.safetensors")
        let f = try SafeTensorsFile(path: path)
        assertFormatError(try f.bytes("nope"), path: path) {
            if case .missingTensor(_, "nope") = $0 { return true }
            return false
        }
        assertFormatError(try f.floats("nope"), path: path) {
            if case .missingTensor(_, "nope") = $0 { return true }
            return false
        }
        var small = [Float](repeating: 0, count: 3)
        assertFormatError(try small.withUnsafeMutableBufferPointer { try f.floats("t_f32", into: $0) }, path: path) {
            if case .outputSizeMismatch(_, "t_f32", 12, 3) = $0 { return true }
            return false
        }
    }

    /// Large tensors convert in parallel; results equal the element-wise scalar conversions.
    func testLargeConversionsMatchScalar() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        var rng = TestRNG(seed: 3)
        let n = 1 << 19
        let raw16 = rng.bytes(2 * n)
        let path = tmp.file("big.safetensors")
        try SafeTensorsWriter.write([
            .init(name: "h", dtype: .f16, shape: [n], bytes: raw16),
            .init(name: "b", dtype: .bf16, shape: [n], bytes: raw16),
        ], to: path)
        let f = try SafeTensorsFile(path: path)
        let h = try f.floats("h"), b = try f.floats("b")
        for i in stride(from: 0, to: n, by: 1) {
            let bits = UInt16(raw16[2 * i]) | UInt16(raw16[2 * i + 1]) << 8
            if h[i].bitPattern != Float(f16Bits: bits).bitPattern || b[i].bitPattern != Float(bf16Bits: bits).bitPattern {
                XCTFail("element \(i) differs")
                break
            }
        }
    }

    /// Converting a tensor releases its source pages (they leave the resident set); reading it
    /// again reads the same values back from the file.
    func testConvertedTensorsLeaveTheResidentSetAndReadAgain() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        var rng = TestRNG(seed: 5)
        let n = 16 << 20   // 32 MiB of bf16
        let raw = rng.bytes(2 * n)
        let path = tmp.file("big.safetensors")
        try SafeTensorsWriter.write([.init(name: "w", dtype: .bf16, shape: [n], bytes: raw)], to: path)
        let f = try SafeTensorsFile(path: path)
        let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { out.deallocate() }
        out.initialize(repeating: 0)   // the output's own pages are resident before the read
        let before = rssBytes()
        try f.floats("w", into: out)
        let after = rssBytes()
        XCTAssertLessThan(after - before, 8 << 20, "the 32 MiB of source pages were released after the conversion")
        let again = try f.floats("w")
        for i in stride(from: 0, to: n, by: 4099) { XCTAssertEqual(again[i].bitPattern, out[i].bitPattern) }
    }

    func rssBytes() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return (Int(text.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
