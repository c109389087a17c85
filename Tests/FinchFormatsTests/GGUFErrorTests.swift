import XCTest
import FinchFormats

/// Every way a GGUF file can be broken gives a specific typed error naming the file.
final class GGUFErrorTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.cleanup() }

    /// A small valid file: strings, an array, an F32 and a Q8_0 tensor.
    func validBuilder() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.metadata = [
            ("general.architecture", .string("llama")),
            ("general.name", .string("a reasonably long model name for truncation tests")),
            ("list", .array(type: 4, count: 3, items: [.u32(1), .u32(2), .u32(3)])),
        ]
        b.tensors = [
            .init(name: "a.weight", dims: [8], type: 0, data: [UInt8](repeating: 0, count: 32)),
            .init(name: "b.weight", dims: [32, 2], type: 8, data: [UInt8](repeating: 0, count: 68)),
        ]
        return b
    }

    func open(_ bytes: [UInt8], _ name: String = "bad.gguf") -> (String, () throws -> GGUFFile) {
        let path = tmp.write(name, bytes)
        return (path, { try GGUFFile(path: path) })
    }

    func testValidBaseline() throws {
        let (path, load) = open(validBuilder().bytes)
        let f = try load()
        XCTAssertEqual(f.path, path)
        XCTAssertEqual(f.tensors.map(\.name), ["a.weight", "b.weight"])
        XCTAssertEqual(try f.dequantize(f.tensors[1]), [Float](repeating: 0, count: 64))
    }

    func testMissingFile() {
        let path = tmp.file("does-not-exist.gguf")
        assertFormatError(try GGUFFile(path: path), path: path) {
            if case .io = $0 { return true }
            return false
        }
        assertFormatError(try GGUFFile(path: tmp.path), path: tmp.path) {
            if case .io = $0 { return true }
            return false
        }
    }

    func testBadMagic() {
        var b = validBuilder()
        b.magic = Array("GGML".utf8)
        let (path, load) = open(b.bytes)
        assertFormatError(try load(), path: path) {
            if case .badMagic(_, "GGUF", let found) = $0 { return found == Array("GGML".utf8) }
            return false
        }
        let (p2, load2) = open(Array(#"{"a": 1}"#.utf8) + [UInt8](repeating: 0, count: 32), "json.gguf")
        assertFormatError(try load2(), path: p2) {
            if case .badMagic = $0 { return true }
            return false
        }
        // torch.save's zip archive and a bare pickle (protocol 2) given as a model file: named as pickles, not read.
        for (name, head) in [("zip.pt", [0x50, 0x4b, 0x03, 0x04] as [UInt8]), ("pickle.bin", [0x80, 0x02, 0x7d, 0x71])] {
            let (p, load) = open(head + [UInt8](repeating: 0, count: 32), name)
            assertFormatError(try load(), path: p) {
                if case .pickleCheckpoint = $0 { return true }
                return false
            }
        }
    }

    func testUnsupportedVersions() {
        for v: UInt32 in [0, 1, 4, 99] {
            var b = validBuilder()
            b.version = v
            let (path, load) = open(b.bytes, "v\(v).gguf")
            assertFormatError(try load(), path: path) {
                if case .unsupportedVersion(_, v, [2, 3]) = $0 { return true }
                return false
            }
        }
        var b = validBuilder()
        b.version = 0x0300_0000  // a big-endian v3 file
        let (path, load) = open(b.bytes)
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let reason) = $0 { return reason.contains("big-endian") }
            return false
        }
    }

    func testTruncatedAtEverySection() {
        let (full, layout) = validBuilder().build()
        let cuts: [(String, Int)] = [
            ("magic", 2),
            ("version", 6),
            ("counts", 16),
            ("metadata key", layout.metadataStart + 10),
            ("metadata string value", layout.metadataStart + 8 + 20 + 4 + 8 + 3),
            ("metadata array", layout.tensorInfoStart - 5),
            ("tensor info name", layout.tensorInfoStart + 4),
            ("tensor info dims", layout.tensorInfoStart + 8 + 8 + 4 + 3),
            ("second tensor info", layout.tensorInfoStart + 40 + 12),
            ("data", layout.dataStart + 40),
            ("last data byte", layout.dataStart + 99),
        ]
        for (what, cut) in cuts {
            let (path, load) = open(Array(full[..<cut]), "cut-\(cut).gguf")
            assertFormatError(try load(), path: path) {
                if case .truncatedFile(_, let expected, let actual) = $0 { return actual == cut && expected > cut }
                XCTFail("truncated in \(what): got \($0)")
                return false
            }
        }
    }

    func testStringLengthBiggerThanFile() {
        for len: UInt64 in [1 << 40, UInt64.max, UInt64(Int.max)] {
            var b = validBuilder()
            b.metadata.append(("huge", .rawString(length: len, bytes: Array("abc".utf8))))
            let (path, load) = open(b.bytes, "str-\(len).gguf")
            assertFormatError(try load(), path: path) {
                if case .badHeader(_, let reason) = $0 { return reason.contains("huge") && reason.contains("more than the file holds") }
                return false
            }
        }
        // A plausible length past the end of the file reads as truncation.
        var b0 = validBuilder()
        b0.metadata.append(("long", .rawString(length: 100_000, bytes: Array("abc".utf8))))
        let (p0, load0) = open(b0.bytes, "str-long.gguf")
        assertFormatError(try load0(), path: p0) {
            if case .truncatedFile(_, let expected, _) = $0 { return expected > 100_000 }
            return false
        }
        // A tensor name length beyond the file.
        var b = validBuilder()
        b.tensors[0].name = "x"
        var (bytes, layout) = b.build()
        bytes.replaceSubrange(layout.tensorInfoStart..<(layout.tensorInfoStart + 8),
                              with: withUnsafeBytes(of: UInt64(1 << 50).littleEndian, Array.init))
        let (path, load) = open(bytes, "name.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let reason) = $0 { return reason.contains("tensor name") }
            return false
        }
    }

    func testAbsurdArrayCounts() {
        let cases: [(String, GGUFBuilder.Value)] = [
            ("u32", .array(type: 4, count: 1 << 60, items: [])),
            ("u8", .array(type: 0, count: UInt64.max, items: [])),
            ("strings", .array(type: 8, count: 1 << 40, items: [])),
            ("nested", .array(type: 9, count: 1, items: [.custom(tag: 0, payload: withUnsafeBytes(of: 4 as UInt32, Array.init) + withUnsafeBytes(of: UInt64(1) << 62, Array.init))])),
        ]
        for (what, value) in cases {
            var b = validBuilder()
            b.metadata.append(("arr", value))
            let (path, load) = open(b.bytes, "arr-\(what).gguf")
            assertFormatError(try load(), path: path) {
                if case .badHeader(_, let reason) = $0 { return reason.contains("arr") }
                return false
            }
        }
        // Absurd tensor / KV counts in the header.
        var b = validBuilder()
        b.tensorCountOverride = 1 << 58
        var (path, load) = open(b.bytes, "tc.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let r) = $0 { return r.contains("tensor count") }
            return false
        }
        b = validBuilder()
        b.kvCountOverride = UInt64.max
        (path, load) = open(b.bytes, "kc.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let r) = $0 { return r.contains("metadata count") }
            return false
        }
    }

    func testBadMetadataValues() {
        let cases: [(String, GGUFBuilder.Value, String)] = [
            ("tag", .custom(tag: 13, payload: [0, 0, 0, 0]), "unknown value type 13"),
            ("elemtag", .array(type: 77, count: 1, items: []), "unknown value type 77"),
        ]
        for (name, value, needle) in cases {
            var b = validBuilder()
            b.metadata.append((name, value))
            let (path, load) = open(b.bytes, "\(name).gguf")
            assertFormatError(try load(), path: path) {
                if case .badHeader(_, let r) = $0 { return r.contains(needle) }
                return false
            }
        }
        // Nesting deeper than the limit.
        var deep = GGUFBuilder.Value.array(type: 4, count: 1, items: [.u32(1)])
        for _ in 0..<20 { deep = .array(type: 9, count: 1, items: [deep]) }
        var b = validBuilder()
        b.metadata.append(("deep", deep))
        let (path, load) = open(b.bytes, "deep.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let r) = $0 { return r.contains("deeper") }
            return false
        }
    }

    func testDuplicatesAndAlignment() {
        var b = validBuilder()
        b.metadata.append(("general.name", .string("again")))
        var (path, load) = open(b.bytes, "dupkey.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let r) = $0 { return r.contains("general.name") && r.contains("twice") }
            return false
        }
        b = validBuilder()
        b.tensors[1].name = "a.weight"
        (path, load) = open(b.bytes, "duptensor.gguf")
        assertFormatError(try load(), path: path) {
            if case .badHeader(_, let r) = $0 { return r.contains("a.weight") && r.contains("twice") }
            return false
        }
        for (name, v) in [("align48", GGUFBuilder.Value.u32(48)), ("align0", .u32(0)), ("alignI32", .i32(32))] {
            b = validBuilder()
            b.metadata.append(("general.alignment", v))
            (path, load) = open(b.bytes, "\(name).gguf")
            assertFormatError(try load(), path: path) {
                if case .badHeader(_, let r) = $0 { return r.contains("general.alignment") }
                return false
            }
        }
    }

    func testTensorOffsetOutOfRange() {
        for off: UInt64 in [1 << 20, 64, UInt64.max, UInt64(Int.max)] {
            var b = validBuilder()
            b.tensors[1].offset = off
            let (path, load) = open(b.bytes, "off-\(off).gguf")
            assertFormatError(try load(), path: path) {
                if case .offsetOutOfRange(_, "b.weight", _, _, _) = $0 { return true }
                return false
            }
        }
    }

    func testUnknownGGMLType() {
        for t: UInt32 in [4, 5, 31, 36, 1000, UInt32.max] {
            var b = validBuilder()
            b.tensors[0].type = t
            let (path, load) = open(b.bytes, "type-\(t).gguf")
            assertFormatError(try load(), path: path) {
                if case .unknownTensorType(_, "a.weight", t) = $0 { return true }
                return false
            }
        }
    }

    func testUnsupportedDequantization() throws {
        var b = validBuilder()
        b.tensors.append(.init(name: "iq", dims: [256], type: GGMLType.iq2_xxs.rawValue, data: [UInt8](repeating: 0, count: 66)))
        let (path, load) = open(b.bytes)
        let f = try load()
        let t = try XCTUnwrap(f.tensor(named: "iq"))
        XCTAssertEqual(t.byteCount, 66)
        assertFormatError(try f.dequantize(t), path: path) {
            if case .unsupportedTensorType(_, "iq", "IQ2_XXS") = $0 { return true }
            return false
        }
    }

    func testInvalidShapes() {
        let cases: [(String, [UInt64], UInt32)] = [
            ("rowNotMultiple", [33, 2], 8),
            ("overflow", [1 << 40, 1 << 40], 0),
            ("bytesOverflow", [UInt64(Int.max / 2) + 1], 0),
            ("tooManyDims", [1, 1, 1, 1, 8], 0),
            ("dimTooBig", [UInt64.max], 0),
        ]
        for (name, dims, type) in cases {
            var b = validBuilder()
            b.tensors[0].dims = dims
            b.tensors[0].type = type
            let (path, load) = open(b.bytes, "\(name).gguf")
            assertFormatError(try load(), path: path) {
                if case .invalidShape(_, "a.weight", _) = $0 { return true }
                return false
            }
        }
    }

    func testForeignTensorInfoIsRejected() throws {
        let (path, load) = open(validBuilder().bytes)
        let f = try load()
        let forged = GGUFTensorInfo(name: "forged", type: .f32, dimensions: [1 << 20], offset: f.dataOffset, byteCount: 4 << 20)
        assertFormatError(try f.dequantize(forged), path: path) {
            if case .offsetOutOfRange(_, "forged", _, _, _) = $0 { return true }
            return false
        }
        let inconsistent = GGUFTensorInfo(name: "bad", type: .q8_0, dimensions: [32], offset: f.dataOffset, byteCount: 4)
        assertFormatError(try f.dequantize(inconsistent), path: path) {
            if case .offsetOutOfRange(_, "bad", _, _, _) = $0 { return true }
            return false
        }
    }

    func testEmptyFile() {
        let (path, load) = open([])
        assertFormatError(try load(), path: path) {
            if case .truncatedFile(_, 4, 0) = $0 { return true }
            return false
        }
    }
}
