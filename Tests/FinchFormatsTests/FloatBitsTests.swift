import XCTest
import FinchFormats

final class FloatBitsTests: XCTestCase {
    func testF16RoundTripsExhaustively() {
        for h in 0...UInt16.max {
            let f = Float(f16Bits: h)
            if f.isNaN {
                XCTAssertTrue(Float(f16Bits: f.f16Bits).isNaN)
                XCTAssertEqual(f.f16Bits, h, "NaN payload kept")  // payload fits in 10 bits
            } else if f.f16Bits != h {
                XCTFail("f16 \(String(h, radix: 16)) -> \(f) -> \(String(f.f16Bits, radix: 16))")
                return
            }
        }
    }

    func testF16KnownValues() {
        XCTAssertEqual(Float(f16Bits: 0x3c00), 1)
        XCTAssertEqual(Float(f16Bits: 0xc000), -2)
        XCTAssertEqual(Float(f16Bits: 0x7bff), 65504)
        XCTAssertEqual(Float(f16Bits: 0x0001), 0x1p-24)
        XCTAssertEqual(Float(f16Bits: 0x03ff), 1023 * 0x1p-24)
        XCTAssertEqual(Float(f16Bits: 0x7c00), .infinity)
        XCTAssertEqual(Float(f16Bits: 0x7c01).bitPattern, 0x7f80_2000, "signalling NaN payload kept, as NumPy")
        XCTAssertEqual(Float(f16Bits: 0x8000).bitPattern, 0x8000_0000)
        // Float -> f16 rounding: nearest, ties to even, overflow to infinity.
        XCTAssertEqual(Float(1).f16Bits, 0x3c00)
        XCTAssertEqual((Float(1) + 0x1p-11).f16Bits, 0x3c00, "tie rounds to even")
        XCTAssertEqual((Float(1) + 0x1p-11 + 0x1p-20).f16Bits, 0x3c01)
        XCTAssertEqual((Float(1) + 3 * 0x1p-11).f16Bits, 0x3c02, "tie rounds to even (up)")
        XCTAssertEqual(Float(65504).f16Bits, 0x7bff)
        XCTAssertEqual(Float(65519.99).f16Bits, 0x7bff)
        XCTAssertEqual(Float(65520).f16Bits, 0x7c00)
        XCTAssertEqual(Float(1e10).f16Bits, 0x7c00)
        XCTAssertEqual(Float(-1e10).f16Bits, 0xfc00)
        XCTAssertEqual(Float(0x1p-25).f16Bits, 0x0000, "half the smallest subnormal ties to zero")
        XCTAssertEqual(Float(0x1p-25 * 1.0001).f16Bits, 0x0001)
        XCTAssertEqual(Float(3 * 0x1p-25).f16Bits, 0x0002, "subnormal tie to even")
        XCTAssertEqual(Float(0x1p-14 - 0x1p-26).f16Bits, 0x0400, "rounds up into the normal range")
        XCTAssertEqual(Float(-0.0).f16Bits, 0x8000)
        XCTAssertEqual(Float.nan.f16Bits & 0x7c00, 0x7c00)
        XCTAssertNotEqual(Float.nan.f16Bits & 0x03ff, 0)
        XCTAssertEqual(Float(bitPattern: 0x7f80_0001).f16Bits, 0x7c01, "NaN with low payload stays NaN")
    }

    func testBF16() {
        XCTAssertEqual(Float(bf16Bits: 0x3f80), 1)
        XCTAssertEqual(Float(1).bf16Bits, 0x3f80)
        XCTAssertEqual(Float(bitPattern: 0x3f80_8000).bf16Bits, 0x3f80, "tie to even (down)")
        XCTAssertEqual(Float(bitPattern: 0x3f81_8000).bf16Bits, 0x3f82, "tie to even (up)")
        XCTAssertEqual(Float(bitPattern: 0x3f80_8001).bf16Bits, 0x3f81)
        XCTAssertEqual(Float(bitPattern: 0x7f7f_ffff).bf16Bits, 0x7f80, "overflow to infinity")
        XCTAssertEqual(Float(bitPattern: 0x7f80_0001).bf16Bits, 0x7fc0, "NaN made quiet")
        XCTAssertEqual(Float(bitPattern: 0xff80_0000).bf16Bits, 0xff80)
        for b in stride(from: 0, through: 0xffff, by: 7) {
            let f = Float(bf16Bits: UInt16(b))
            if !f.isNaN { XCTAssertEqual(f.bf16Bits, UInt16(b)) }
        }
    }

    func testFP8() {
        XCTAssertEqual(Float(f8E4M3Bits: 0x38), 1)
        XCTAssertEqual(Float(f8E4M3Bits: 0x7e), 448)
        XCTAssertTrue(Float(f8E4M3Bits: 0x7f).isNaN)
        XCTAssertTrue(Float(f8E4M3Bits: 0xff).isNaN)
        XCTAssertEqual(Float(f8E4M3Bits: 0x01), 0x1p-9)
        XCTAssertEqual(Float(f8E4M3Bits: 0xb8), -1)
        XCTAssertEqual(Float(f8E5M2Bits: 0x3c), 1)
        XCTAssertEqual(Float(f8E5M2Bits: 0x7b), 57344)
        XCTAssertEqual(Float(f8E5M2Bits: 0x7c), .infinity)
        XCTAssertTrue(Float(f8E5M2Bits: 0x7d).isNaN)
    }

    func testBulkConversions() {
        let src: [Float] = [1, -2.5, 0.1, 65504, 1e-7]
        var h = [UInt16](repeating: 0, count: 5), b = [UInt16](repeating: 0, count: 5)
        src.withUnsafeBufferPointer { s in
            HalfConversion.floatToF16(s.baseAddress!, &h, count: 5)
            HalfConversion.floatToBF16(s.baseAddress!, &b, count: 5)
        }
        XCTAssertEqual(h, src.map(\.f16Bits))
        XCTAssertEqual(b, src.map(\.bf16Bits))
        var back = [Float](repeating: 0, count: 5)
        h.withUnsafeBytes { HalfConversion.f16ToFloat($0.baseAddress!, &back, count: 5) }
        XCTAssertEqual(back, h.map { Float(f16Bits: $0) })
        b.withUnsafeBytes { HalfConversion.bf16ToFloat($0.baseAddress!, &back, count: 5) }
        XCTAssertEqual(back, b.map { Float(bf16Bits: $0) })
    }
}
