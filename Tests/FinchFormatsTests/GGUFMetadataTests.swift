import XCTest
import FinchFormats

final class GGUFMetadataTests: XCTestCase {
    func checkMetadata(_ file: GGUFFile) throws {
        let m = file.metadata
        XCTAssertEqual(m["general.architecture"], .string("finchtest"))
        XCTAssertEqual(m["general.alignment"], .uint32(64))
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.dataOffset % 64, 0)
        XCTAssertEqual(m["t.u8"], .uint8(200))
        XCTAssertEqual(m["t.i8"], .int8(-100))
        XCTAssertEqual(m["t.u16"], .uint16(60000))
        XCTAssertEqual(m["t.i16"], .int16(-30000))
        XCTAssertEqual(m["t.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(m["t.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(m["t.f32"], .float32(0.1))
        XCTAssertEqual(m["t.bool_true"], .bool(true))
        XCTAssertEqual(m["t.bool_false"], .bool(false))
        XCTAssertEqual(m["t.str"], .string("h\u{e9}llo \u{2713} \u{1F426}"))
        XCTAssertEqual(m["t.str_empty"], .string(""))
        XCTAssertEqual(m["t.u64"], .uint64(UInt64.max))
        XCTAssertEqual(m["t.i64"], .int64(Int64.min))
        XCTAssertEqual(m["t.f64"], .float64(-1.0 / 3.0))
        XCTAssertEqual(m["t.arr_u8"], .array([.uint8(1), .uint8(2), .uint8(255)]))
        XCTAssertEqual(m["t.arr_i8"], .array([.int8(-1), .int8(0), .int8(127)]))
        XCTAssertEqual(m["t.arr_u16"], .array([.uint16(65535)]))
        XCTAssertEqual(m["t.arr_i16"], .array([.int16(-2), .int16(2)]))
        XCTAssertEqual(m["t.arr_u32"], .array([.uint32(7), .uint32(8), .uint32(9)]))
        XCTAssertEqual(m["t.arr_i32"], .array([.int32(-7), .int32(8)]))
        XCTAssertEqual(m["t.arr_u64"], .array([.uint64(UInt64.max), .uint64(0)]))
        XCTAssertEqual(m["t.arr_i64"], .array([.int64(Int64.min), .int64(5)]))
        XCTAssertEqual(m["t.arr_f32"], .array([.float32(0.5), .float32(-1.25), .float32(3.0e38)]))
        XCTAssertEqual(m["t.arr_f64"], .array([.float64(0.1), .float64(-2.5)]))
        XCTAssertEqual(m["t.arr_bool"], .array([.bool(true), .bool(false), .bool(true)]))
        XCTAssertEqual(m["t.arr_str"]?.stringArray, ["a", "", "\u{fc}n\u{ef}c\u{f6}d\u{e9}", "x y"])
        XCTAssertEqual(m["t.arr_nested_int"], .array([.array([.int32(1), .int32(2), .int32(3)]), .array([.int32(4)]),
                                                      .array([.int32(5), .int32(6)])]))
        XCTAssertEqual(m["t.arr_nested_str"]?.arrayValue?.compactMap(\.stringArray), [["a", "b"], ["c"]])
        XCTAssertEqual(m["t.arr_nested3"], .array([.array([.array([.int32(1)]), .array([.int32(2), .int32(3)])]),
                                                   .array([.array([.int32(4)])])]))

        // Key order is file order.
        XCTAssertEqual(file.metadataKeys.first, "general.architecture")
        XCTAssertEqual(file.metadataKeys.count, m.count)
        XCTAssertEqual(Array(file.metadataKeys.suffix(3)), ["t.arr_nested_int", "t.arr_nested_str", "t.arr_nested3"])
        let i8 = try XCTUnwrap(file.metadataKeys.firstIndex(of: "t.i8"))
        let u16 = try XCTUnwrap(file.metadataKeys.firstIndex(of: "t.u16"))
        XCTAssertLessThan(i8, u16)

        // Tensors and alignment.
        XCTAssertEqual(file.tensors.map(\.name), ["weight", "bias"])
        let w = try XCTUnwrap(file.tensor(named: "weight"))
        XCTAssertEqual(w.type, .f32)
        XCTAssertEqual(w.dimensions, [6, 4])
        XCTAssertEqual(w.offset % 64, 0)
        XCTAssertEqual(try file.dequantize(w), (0..<24).map(Float.init))
        XCTAssertEqual(try file.dequantize(file.tensor(named: "bias")!), [1.5, -2.5, 3.25])
        XCTAssertEqual(file.tensor(named: "bias")!.offset % 64, 0)
        XCTAssertNil(file.tensor(named: "nope"))
    }

    func testMetadataOfEveryType() throws {
        let file = try GGUFFile(path: Fixtures.path("metadata.gguf"))
        XCTAssertEqual(file.version, 3)
        try checkMetadata(file)
    }

    func testVersion2() throws {
        let file = try GGUFFile(path: Fixtures.path("v2.gguf"))
        XCTAssertEqual(file.version, 2)
        try checkMetadata(file)
    }

    func testAccessors() {
        XCTAssertEqual(GGUFValue.uint32(7).intValue, 7)
        XCTAssertEqual(GGUFValue.int8(-3).intValue, -3)
        XCTAssertNil(GGUFValue.uint64(UInt64.max).intValue)
        XCTAssertEqual(GGUFValue.uint64(5).intValue, 5)
        XCTAssertNil(GGUFValue.float32(1).intValue)
        XCTAssertNil(GGUFValue.string("1").intValue)
        XCTAssertEqual(GGUFValue.float32(0.5).doubleValue, 0.5)
        XCTAssertEqual(GGUFValue.int32(-2).doubleValue, -2)
        XCTAssertEqual(GGUFValue.float64(1e300).doubleValue, 1e300)
        XCTAssertNil(GGUFValue.bool(true).doubleValue)
        XCTAssertEqual(GGUFValue.bool(true).boolValue, true)
        XCTAssertNil(GGUFValue.uint8(1).boolValue)
        XCTAssertEqual(GGUFValue.string("x").stringValue, "x")
        XCTAssertNil(GGUFValue.int32(1).stringValue)
        let arr = GGUFValue.array([.int32(1), .uint8(2)])
        XCTAssertEqual(arr.intArray, [1, 2])
        XCTAssertEqual(arr.doubleArray, [1, 2])
        XCTAssertNil(arr.stringArray)
        XCTAssertEqual(arr.arrayValue?.count, 2)
        XCTAssertNil(GGUFValue.array([.string("a"), .int32(1)]).stringArray)
        XCTAssertNil(GGUFValue.array([.string("a")]).intArray)
        XCTAssertEqual(GGUFValue.array([.float32(0.25)]).doubleArray, [0.25])
        XCTAssertNil(GGUFValue.int32(1).arrayValue)
        XCTAssertEqual(GGUFValue.array([]).stringArray, [])
        XCTAssertEqual(GGUFValue.string("a\"b").description, "\"a\\\"b\"")
        XCTAssertEqual(GGUFValue.array((0..<10).map { .int32(Int32($0)) }).description,
                       "[0, 1, 2, 3, 4, 5, 6, 7, ... (10 items)]")
        XCTAssertEqual(GGUFValue.uint16(1).type, .uint16)
    }

    func testTypeTable() {
        // Sizes from ggml (gguf-py's GGML_QUANT_SIZES, except Q8_1 whose ggml block is 36 bytes).
        let expected: [GGMLType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
            .q5_1: (32, 24), .q8_0: (32, 34), .q8_1: (32, 36), .q2_K: (256, 84), .q3_K: (256, 110),
            .q4_K: (256, 144), .q5_K: (256, 176), .q6_K: (256, 210), .q8_K: (256, 292), .iq4_nl: (32, 18),
            .iq4_xs: (256, 136), .tq1_0: (256, 54), .tq2_0: (256, 66), .mxfp4: (32, 17), .i8: (1, 1),
            .i16: (1, 2), .i32: (1, 4), .i64: (1, 8), .f64: (1, 8), .iq2_xxs: (256, 66),
        ]
        for (t, (bs, ts)) in expected {
            XCTAssertEqual(t.blockSize, bs, t.name)
            XCTAssertEqual(t.typeSize, ts, t.name)
        }
        XCTAssertEqual(GGMLType(rawValue: 12), .q4_K)
        XCTAssertNil(GGMLType(rawValue: 4))
        XCTAssertTrue(GGMLType.q6_K.canDequantize)
        XCTAssertFalse(GGMLType.iq2_xxs.canDequantize)
        XCTAssertEqual(GGMLType.q4_K.name, "Q4_K")
    }

    func testAnyNonZeroBoolByteIsTrue() throws {
        var b = GGUFBuilder()
        b.metadata = [("t", .bool(2)), ("f", .bool(0))]
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let f = try GGUFFile(path: tmp.write("b.gguf", b.bytes))
        XCTAssertEqual(f.metadata["t"], .bool(true))
        XCTAssertEqual(f.metadata["f"], .bool(false))
    }

    /// A file with metadata and no tensors, built by hand.
    func testNoTensors() throws {
        var b = GGUFBuilder()
        b.metadata = [("a", .string("b")), ("n", .u32(3))]
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (bytes, layout) = b.build()
        // No data section: the file may end right after the header, without padding.
        let path = tmp.write("x.gguf", Array(bytes[..<layout.tensorInfoStart]))
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.tensors.count, 0)
        XCTAssertEqual(f.metadataKeys, ["a", "n"])
        XCTAssertEqual(f.metadata["n"]?.intValue, 3)
    }
}
