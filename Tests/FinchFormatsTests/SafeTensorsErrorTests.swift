import XCTest
import FinchFormats

/// Every way a safetensors file can be broken gives a specific typed error naming the file.
final class SafeTensorsErrorTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.cleanup() }

    /// A file with `header` as its JSON (length prefix computed unless given) and `data`.
    func file(_ header: String, data: [UInt8], declaredLength: UInt64? = nil, name: String = "bad.safetensors") -> String {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { Array($0) }
        bytes += h + data
        return tmp.write(name, bytes)
    }

    func expect(_ path: String, line: UInt = #line, _ matches: @escaping (FormatError) -> Bool) {
        assertFormatError(try SafeTensorsFile(path: path), path: path, line: line, matches)
    }

    func testValidBaseline() throws {
        let p = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(try SafeTensorsFile(path: p).floats("a"), [0, 0])
        // Whitespace (leading too, as the reference reader allows), escapes and a trailing-space pad are fine.
        let p2 = file(" { \"b\\u0041\" : {\"shape\": [1], \"data_offsets\": [0, 2], \"dtype\": \"BF16\", \"extra\": null} }   ",
                      data: [0x80, 0x3f], name: "ws.safetensors")
        XCTAssertEqual(try SafeTensorsFile(path: p2).floats("bA"), [1])
    }

    func testTooSmallAndHeaderLongerThanFile() {
        let tiny = tmp.write("tiny.safetensors", [1, 0, 0])
        expect(tiny) {
            if case .truncatedFile(_, 8, 3) = $0 { return true }
            return false
        }
        let p = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [], declaredLength: 5000)
        expect(p) {
            if case .truncatedFile(_, 5008, _) = $0 { return true }
            return false
        }
        let huge = file("{}", data: [], declaredLength: UInt64.max, name: "huge.safetensors")
        expect(huge) {
            if case .badHeader(_, let r) = $0 { return r.contains("limit") }
            return false
        }
    }

    func testBadJSON() {
        let cases = [
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}"#,   // trailing comma
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,     // unterminated
            #"{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}"#,   // leading zero
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x"#,  // trailing garbage
            "{\"a\u{1}\":1}",                                                // control character
            #"{"\ud800":1}"#,                                              // lone surrogate
        ]
        for (i, h) in cases.enumerated() {
            let p = file(h, data: [UInt8](repeating: 0, count: 8), name: "json\(i).safetensors")
            expect(p) {
                if case .badHeader(_, let r) = $0 { return r.contains("invalid JSON") }
                return false
            }
        }
        let notObject = file("[1, 2]", data: [], name: "array.safetensors")
        expect(notObject) {
            if case .badHeader(_, let r) = $0 { return r.contains("expected an object") }
            return false
        }
        let invalidUTF8 = tmp.write("utf8.safetensors", withUnsafeBytes(of: UInt64(6).littleEndian) { Array($0) } + [0x7b, 0x22, 0xff, 0x22, 0x3a, 0x7d])
        expect(invalidUTF8) {
            if case .badHeader = $0 { return true }
            return false
        }
    }

    func testUTF8Validation() throws {
        func header(_ nameBytes: [UInt8]) -> [UInt8] {
            Array(#"{""#.utf8) + nameBytes + Array(#"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#.utf8)
        }
        func write(_ name: String, _ h: [UInt8]) -> String {
            tmp.write(name, withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + [7])
        }
        let good = write("good.safetensors", header(Array("ü€🐦".utf8)))
        XCTAssertEqual(try SafeTensorsFile(path: good).tensorNames, ["ü€🐦"])
        let bad: [[UInt8]] = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xff]]
        for (i, seq) in bad.enumerated() {
            let p = write("bad\(i).safetensors", header(Array("a".utf8) + seq + Array("b".utf8)))
            expect(p) {
                if case .badHeader(_, let r) = $0 { return r.contains("UTF-8") }
                return false
            }
        }
    }

    func testMalformedEntries() {
        let cases: [(String, String)] = [
            (#"{"a": 3}"#, "expected an object"),
            (#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, "dtype"),
            (#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, "shape"),
            (#"{"a":{"dtype":"F32","shape":[2]}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, "end before"),
            (#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "__metadata__"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "twice"),
        ]
        for (i, (h, needle)) in cases.enumerated() {
            let p = file(h, data: [UInt8](repeating: 0, count: 8), name: "m\(i).safetensors")
            expect(p) {
                if case .badHeader(_, let r) = $0 { return r.contains(needle) }
                return false
            }
        }
        let neg = file(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8), name: "neg.safetensors")
        expect(neg) {
            if case .invalidShape(_, "a", _) = $0 { return true }
            return false
        }
        let overflow = file(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8), name: "of.safetensors")
        expect(overflow) {
            if case .invalidShape(_, "a", _) = $0 { return true }
            return false
        }
    }

    func testOffsetsOutOfRange() {
        let p = file(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 0, count: 8))
        expect(p) {
            if case .offsetOutOfRange(_, "a", 0, 16, 8) = $0 { return true }
            return false
        }
        let p2 = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,18446744073709551615]}}"#,
                      data: [UInt8](repeating: 0, count: 8), name: "big.safetensors")
        expect(p2) {
            if case .badHeader = $0 { return true }  // not representable as an offset
            return false
        }
    }

    func testSizeMismatch() {
        let p = file(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        expect(p) {
            if case .dtypeSizeMismatch(_, "a", 12, 8) = $0 { return true }
            return false
        }
        let p2 = file(#"{"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]}}"#, data: [UInt8](repeating: 0, count: 4), name: "bf.safetensors")
        expect(p2) {
            if case .dtypeSizeMismatch(_, "a", 8, 4) = $0 { return true }
            return false
        }
    }

    func testUnknownDType() {
        for dt in ["F128", "f32", "C64", "F4", ""] {
            let p = file(#"{"a":{"dtype":"\#(dt)","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8),
                         name: "dt\(dt).safetensors")
            expect(p) {
                if case .unknownDType(_, "a", dt) = $0 { return true }
                return false
            }
        }
    }

    func testNonContiguousData() {
        let gap = file(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
                       data: [UInt8](repeating: 0, count: 6), name: "gap.safetensors")
        expect(gap) {
            if case .badHeader(_, let r) = $0 { return r.contains("'b'") && r.contains("gap") }
            return false
        }
        let overlap = file(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                           data: [UInt8](repeating: 0, count: 4), name: "overlap.safetensors")
        expect(overlap) {
            if case .badHeader(_, let r) = $0 { return r.contains("overlaps") }
            return false
        }
        let trailing = file(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, data: [UInt8](repeating: 0, count: 5),
                            name: "trailing.safetensors")
        expect(trailing) {
            if case .badHeader(_, let r) = $0 { return r.contains("3 unaccounted") }
            return false
        }
    }
}
