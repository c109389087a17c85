import FinchFormats
import FinchTestSupport
import Foundation
import XCTest

/// Finch's TensorBoard event records against the ones TensorBoard's own writer makes
/// (Scripts/fixtures/make_tensorboard_reference.py: RecordWriter, protobuf, the text plugin's text_pb).
final class TensorBoardEventTests: XCTestCase {
    func testCRC32CKnownAnswers() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)   // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum(Array(0..<32)), 0x46DD_794E)
    }

    /// The events of expected.json, as Finch's types.
    func referenceEvents() throws -> [TensorBoardEvent] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try FinchTestSupport.Fixtures.required("tensorboard/expected.json")))
        let items = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        return try items.map { item in
            let wall = try XCTUnwrap(item["wall_time"] as? Double), step = try XCTUnwrap((item["step"] as? NSNumber)?.int64Value)
            let content: TensorBoardEvent.Content
            switch item["kind"] as? String {
            case "file_version": content = .fileVersion(try XCTUnwrap(item["payload"] as? String))
            case "session_start": content = .sessionStart
            case "text":
                let p = try XCTUnwrap(item["payload"] as? [String])
                content = .summary([.text(tag: p[0], text: p[1])])
            default:
                let p = try XCTUnwrap(item["payload"] as? [[Any]])
                content = .summary(try p.map { .scalar(tag: try XCTUnwrap($0[0] as? String), value: Float(try XCTUnwrap($0[1] as? Double))) })
            }
            return TensorBoardEvent(wallTime: wall, step: step, content: content)
        }
    }

    func testRecordsEqualTensorBoardsByteForByte() throws {
        let reference = try Array(Data(contentsOf: URL(fileURLWithPath: try FinchTestSupport.Fixtures.required("tensorboard/reference.tfevents"))))
        let events = try referenceEvents()
        XCTAssertEqual(events.count, 6)
        let ours = events.flatMap { TFRecord.frame($0.serialized) }
        XCTAssertEqual(ours.count, reference.count)
        XCTAssertTrue(ours == reference, "Finch's records differ from TensorBoard's")
        // And each event reads back from TensorBoard's file as it was written.
        let read = try TFRecord.records(reference, path: "reference.tfevents").map { try TensorBoardEvent(serialized: $0) }
        XCTAssertEqual(read, events)
    }

    func testWriterAppendsReadableFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try TensorBoardEventWriter(directory: dir, wallTime: 1_765_000_000)
        XCTAssertTrue((w.path as NSString).lastPathComponent.hasPrefix("events.out.tfevents.1765000000."))
        try w.write(TensorBoardEvent(wallTime: 1_765_000_001, step: 7, content: .summary([.scalar(tag: "train/loss", value: 0)])))
        let second = try TensorBoardEventWriter(directory: dir, wallTime: 1_765_000_000)   // same second: another file
        XCTAssertNotEqual(second.path, w.path)
        let events = try TensorBoardEventWriter.read(w.path)
        XCTAssertEqual(events.map(\.content), [.fileVersion("brain.Event:2"), .summary([.scalar(tag: "train/loss", value: 0)])])
        XCTAssertEqual(events.last?.step, 7)
    }

    func testCorruptionIsRefusedAndACutLastRecordIsNot() throws {
        let reference = try Array(Data(contentsOf: URL(fileURLWithPath: try FinchTestSupport.Fixtures.required("tensorboard/reference.tfevents"))))
        // A record still being written (or cut by a kill) ends the list, as TensorBoard reads it.
        XCTAssertEqual(try TFRecord.records(Array(reference.dropLast(3)), path: "f").count, 5)
        var bad = reference
        bad[40] ^= 0x01   // inside the first record's data
        XCTAssertThrowsError(try TFRecord.records(bad, path: "f.tfevents")) { e in
            XCTAssertTrue("\(e)".contains("f.tfevents") && "\(e)".contains("checksum"), "\(e)")
        }
        bad = reference
        bad[1] ^= 0x01    // the first length
        XCTAssertThrowsError(try TFRecord.records(bad, path: "f.tfevents"))
        XCTAssertThrowsError(try TensorBoardEvent(serialized: [0x0A, 0x05, 0x61]))   // a field longer than the bytes
    }
}
