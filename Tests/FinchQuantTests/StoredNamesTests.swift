import FinchFormats
@testable import FinchQuant
import XCTest

/// A stored quantized weight names exactly the tensors it writes, so that loading takes those and
/// nothing else (a stray tensor beside a 4-bit weight is an error, not silently taken).
final class StoredNamesTests: XCTestCase {
    func testStoredNamesAreTheWrittenEntries() throws {
        let values = (0..<512).map { Float(($0 * 37) % 101) / 50 - 1 }
        let name = "model.layers.0.mlp.up_proj.weight"
        for type in FourBitType.allCases {
            for double in [false, true] {
                let q = try values.withUnsafeBufferPointer {
                    try FourBitTensor.quantize($0, shape: [16, 32], type: type, blocksize: 64, doubleQuant: double)
                }
                XCTAssertEqual(Set(q.storedNames(name: name)), Set(q.safeTensorsEntries(name: name, dtype: "float32").map(\.name)),
                               "\(type) double \(double)")
            }
        }
        let i8 = values.withUnsafeBufferPointer { Int8Tensor.quantize($0, rows: 16, columns: 32, threshold: 6) }
        XCTAssertEqual(Set(i8.storedNames(name: name)), Set(i8.safeTensorsEntries(name: name).map(\.name)))
    }
}
