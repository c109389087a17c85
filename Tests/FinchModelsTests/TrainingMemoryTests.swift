import FinchCore
@testable import FinchModels
import FinchTestSupport
import XCTest

/// `trainingActivationBytes` (what `finch train --dry-run` predicts) against the buffers a
/// training workspace really holds, found by reflection so the check does not repeat the formula.
final class TrainingMemoryTests: XCTestCase {
    /// Bytes of every `Buffer` reachable from `value` through stored properties and arrays.
    func bufferBytes(_ value: Any) -> Int {
        if let b = value as? Buffer<Float> { return b.byteCount }
        if let b = value as? Buffer<BF16Bits> { return b.byteCount }
        return Mirror(reflecting: value).children.reduce(0) { $0 + bufferBytes($1.value) }
    }

    func testSavedBytesMatchTheWorkspace() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-llama/hf"))
        for checkpointing in [false, true] {
            for rows in [1, 37, 300] {
                let w = (lm.model as! DecoderModel).trainingWorkspace(rows: rows, checkpointing: checkpointing)
                let predicted = lm.model.trainingActivationBytes(rows: rows, checkpointing: checkpointing, loraRank: 8)
                XCTAssertEqual(predicted.saved, bufferBytes(w), "rows \(rows) checkpointing \(checkpointing)")
                XCTAssertGreaterThan(predicted.transient, rows * lm.model.vocabSize * 4 / 2)
                lm.model.releaseTrainingMemory()
            }
        }
    }

    /// A mixture of experts (Qwen2-MoE: sparse layers 0 and 2, layer 1 dense): after a training pass over
    /// `rows` rows the workspace's buffers and every kept routing are what the prediction says is saved.
    func testMoESavedBytesMatchTheWorkspaceAndRoutes() throws {
        let lm = try LoadedModel.load(Fixtures.path("tiny-qwen2_moe/hf"))
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        try m.attachRandomizedAdapter(r: 2, name: "t")
        for checkpointing in [false, true] {
            for rows in [2, 37, 120] {   // (one row has no target: no pass)
                let tokens = (0..<rows).map { Int32(3 + $0 * 7 % 300) }
                try m.forwardBackward([TrainingSequence(tokens: tokens)], checkpointing: checkpointing)
                let w = m.trainingWorkspace(rows: rows, checkpointing: checkpointing)
                let routes = w.layers.compactMap { $0.moe?.routes }
                    .reduce(0) { $0 + ($1.probabilities.count + $1.chosen.count + $1.weights.count) * 4 }
                let predicted = m.trainingActivationBytes(rows: rows, checkpointing: checkpointing, loraRank: 2)
                XCTAssertEqual(predicted.saved, bufferBytes(w) + routes, "rows \(rows) checkpointing \(checkpointing)")
                m.releaseTrainingMemory()
            }
        }
    }

    /// The experts' share of the base weights `--dry-run` reports: Qwen2-MoE's two sparse layers of 4 experts of 48
    /// (gate, up, down over a hidden size of 64, f32), a token reading its top 2 of each; none for a dense model.
    func testExpertWeightBytes() throws {
        let m = try XCTUnwrap(try LoadedModel.load(Fixtures.path("tiny-qwen2_moe/hf")).model as? DecoderModel)
        let all = 2 * 4 * 3 * 48 * 64 * 4
        XCTAssertEqual(m.expertWeightBytes, ExpertWeightBytes(all: all, perToken: all / 2, mapped: false))
        XCTAssertLessThan(all, m.weightBytes)
        XCTAssertNil(try LoadedModel.load(Fixtures.path("tiny-qwen2/hf")).model.expertWeightBytes)
    }

    /// T5 (both stacks, gated and not): the prediction for `rows` rows in each stack is the
    /// training workspace allocated for a batch of that many decoder and encoder rows.
    func testT5SavedBytesMatchTheWorkspace() throws {
        for variant in try FileManager.default.contentsOfDirectory(atPath: Fixtures.path("tiny-t5")).sorted()
        where FileManager.default.fileExists(atPath: Fixtures.path("tiny-t5/\(variant)/hf/config.json")) {
            let lm = try LoadedModel.load(Fixtures.path("tiny-t5/\(variant)/hf"))
            let t5 = try XCTUnwrap(lm.model as? T5Model)
            for checkpointing in [false, true] {
                for rows in [1, 37, 300] {
                    let w = t5.trainingWorkspace(rows: rows, sourceRows: rows, checkpointing: checkpointing)
                    let predicted = lm.model.trainingActivationBytes(rows: rows, checkpointing: checkpointing, loraRank: 8)
                    XCTAssertEqual(predicted.saved, bufferBytes(w), "\(variant) rows \(rows) checkpointing \(checkpointing)")
                    lm.model.releaseTrainingMemory()
                }
            }
        }
    }
}
