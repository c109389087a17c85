import FinchCore
import FinchFormats
import FinchModels
@testable import FinchTrain
import FinchTestSupport
import Foundation
import XCTest

/// The bf16 product path is part of a run: a checkpoint records it (`bf16_compute` in
/// trainer_state.json) and a resume computes the same way, whatever this CPU's table says.
final class BF16ComputeResumeTests: XCTestCase {
    override func tearDown() { GEMM.setBF16Compute(nil) }

    func testCheckpointRecordsTheBF16PathAndResumeTakesIt() throws {
        try XCTSkipIf(GEMM.bf16ComputeFromEnvironment != nil,
                      "FINCH_BF16_COMPUTE is set: it overrides the recorded path by design")
        let dir = Fixtures.path("tiny-llama/hf")
        func model() throws -> DecoderModel {
            try DecoderModel.load(from: SafeTensorsWeightSource(directory: dir), config: try LlamaConfig.load(configJSON: dir + "/config.json"),
                                  dtype: .bf16)
        }
        let run = NSTemporaryDirectory() + "finch-bf16-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: run) }
        var c = TrainerTests.config(steps: 2)
        c.saveSteps = 2
        let data = TrainerTests.examples(9, vocab: try model().vocabSize)
        try Trainer(model: try model(), config: c, train: data, runDirectory: run).train()
        let statePath = run + "/checkpoint-2/trainer_state.json"
        var state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as! [String: Any]
        XCTAssertEqual(state["bf16_compute"] as? String, GEMM.bf16Compute.rawValue, "the checkpoint records the path it ran")

        // A checkpoint made where the other path was chosen: the resume takes that path.
        let other: GEMM.BF16Compute = GEMM.bf16Compute == .native ? .f32 : .native
        state["bf16_compute"] = other.rawValue
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        var longer = c; longer.maxSteps = 3
        var seen: GEMM.BF16Compute?
        try Trainer(model: try model(), config: longer, train: data, runDirectory: run).train(resumeFrom: run + "/checkpoint-2") {
            if case .step = $0 { seen = GEMM.bf16Compute }
        }
        XCTAssertEqual(seen, other)

        // A value that is not a path is refused by name.
        state["bf16_compute"] = "fp8"
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        XCTAssertThrowsError(try Trainer(model: try model(), config: longer, train: data).train(resumeFrom: run + "/checkpoint-2")) {
            XCTAssertTrue("\($0)".contains("bf16_compute 'fp8'"), "\($0)")
        }
    }
}
