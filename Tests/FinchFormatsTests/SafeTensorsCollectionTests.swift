import XCTest
import FinchFormats

final class SafeTensorsCollectionTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.cleanup() }

    func testShardedCheckpoint() throws {
        let dir = Fixtures.path("sharded")
        let c = try SafeTensorsCollection(directory: dir)
        XCTAssertEqual(c.names, ["model.embed.weight", "model.layers.0.w", "model.layers.1.w", "lm_head.weight"])
        XCTAssertEqual(c.files.count, 2)
        XCTAssertEqual(try c.floats("model.embed.weight"), (0..<12).map(Float.init))
        XCTAssertEqual(try c.floats("model.layers.0.w"), [0.5, 0.5, 0.5, 0.5])
        XCTAssertEqual(try c.floats("model.layers.1.w"), [1, 2, 3])
        XCTAssertEqual(c.info("lm_head.weight")?.shape, [2, 2])
        XCTAssertEqual(c.info("model.layers.1.w")?.dtype, .i32)
        XCTAssertEqual(try c.bytes("model.layers.1.w").count, 12)
        XCTAssertTrue(c.file(containing: "lm_head.weight")!.path.hasSuffix("model-00002-of-00002.safetensors"))
        XCTAssertEqual(c.metadata["total_size"], "84")
        assertFormatError(try c.floats("missing"), path: dir) {
            if case .missingTensor(_, "missing") = $0 { return true }
            return false
        }
    }

    /// A directory holding only PyTorch pickles is refused by name; they are never opened.
    func testPickleCheckpointsAreRefusedByName() throws {
        let pickle = tmp.write("pytorch_model.bin", [0x80, 0x02, 0x63, 0x6f, 0x73, 0x0a])   // \x80\x02 c os…: code on load
        _ = tmp.write("config.json", Array("{}".utf8))
        assertFormatError(try SafeTensorsCollection(directory: tmp.path), path: pickle) {
            guard case .pickleCheckpoint = $0 else { return false }
            return $0.description.contains("never loads") && $0.description.contains("safe_serialization=True")
        }
        XCTAssertTrue(FormatError.isPickleName("pytorch_model-00001-of-00002.bin"))
        XCTAssertTrue(FormatError.isPickleName("model.PT"))
        XCTAssertFalse(FormatError.isPickleName("pytorch_model.bin.index.json"))
        // Safetensors beside the pickle: the safetensors are read, the pickle is ignored.
        try SafeTensorsWriter.write([.float32(name: "a", shape: [1], values: [1])], to: tmp.file("model.safetensors"))
        XCTAssertEqual(try SafeTensorsCollection(directory: tmp.path).names, ["a"])
    }

    func testIndexNamingATensorTheShardLacks() throws {
        let shard = tmp.file("model-00001-of-00001.safetensors")
        try SafeTensorsWriter.write([.float32(name: "a", shape: [1], values: [1])], to: shard)
        let index = #"{"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors", "b": "model-00001-of-00001.safetensors"}}"#
        _ = tmp.write("model.safetensors.index.json", Array(index.utf8))
        assertFormatError(try SafeTensorsCollection(directory: tmp.path), path: shard) {
            if case .missingTensor(_, "b") = $0 { return true }
            return false
        }
    }

    func testIndexProblems() throws {
        let indexPath = tmp.file("model.safetensors.index.json")
        let cases: [(String, String)] = [
            (#"{"weight_map": {"a": "../escape.safetensors"}}"#, "outside"),
            (#"{"weight_map": {"a": 3}}"#, "expected a file name"),
            (#"{"metadata": {}}"#, "weight_map"),
            (#"{"weight_map": {"a": "x.safetensors",}}"#, "invalid JSON"),
        ]
        for (json, needle) in cases {
            _ = tmp.write("model.safetensors.index.json", Array(json.utf8))
            assertFormatError(try SafeTensorsCollection(directory: tmp.path), path: indexPath) {
                if case .badHeader(_, let r) = $0 { return r.contains(needle) }
                return false
            }
        }
        // A shard file that does not exist.
        _ = tmp.write("model.safetensors.index.json", Array(#"{"weight_map": {"a": "gone.safetensors"}}"#.utf8))
        assertFormatError(try SafeTensorsCollection(directory: tmp.path), path: tmp.file("gone.safetensors")) {
            if case .io = $0 { return true }
            return false
        }
    }

    func testSingleFileAndFallback() throws {
        try SafeTensorsWriter.write([.float32(name: "w", shape: [2], values: [1, 2])], metadata: ["k": "v"],
                                    to: tmp.file("model.safetensors"))
        var c = try SafeTensorsCollection(directory: tmp.path)
        XCTAssertEqual(c.names, ["w"])
        XCTAssertEqual(c.metadata, ["k": "v"])
        XCTAssertEqual(try c.floats("w"), [1, 2])

        let other = TempDir()
        defer { other.cleanup() }
        try SafeTensorsWriter.write([.float32(name: "lora_A", shape: [1], values: [3])], to: other.file("adapter_model.safetensors"))
        try SafeTensorsWriter.write([.float32(name: "extra", shape: [1], values: [4])], to: other.file("b.safetensors"))
        c = try SafeTensorsCollection(directory: other.path + "/")
        XCTAssertEqual(c.names, ["lora_A", "extra"])
        XCTAssertEqual(try c.floats("extra"), [4])

        try SafeTensorsWriter.write([.float32(name: "extra", shape: [1], values: [5])], to: other.file("c.safetensors"))
        assertFormatError(try SafeTensorsCollection(directory: other.path), path: other.file("c.safetensors")) {
            if case .badHeader(_, let r) = $0 { return r.contains("extra") }
            return false
        }

        let empty = TempDir()
        defer { empty.cleanup() }
        assertFormatError(try SafeTensorsCollection(directory: empty.path), path: empty.path) {
            if case .io = $0 { return true }
            return false
        }
    }
}
