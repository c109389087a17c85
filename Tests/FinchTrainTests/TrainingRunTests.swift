import FinchModels
@testable import FinchTrain
import FinchTestSupport
import Foundation
import XCTest

/// `TrainingRun.prepare`: the model, data and split a run starts from, built from a config alone
/// (what `finch train` and later a server or an evaluator call), on every family's tiny checkpoint.
final class TrainingRunTests: XCTestCase {
    func testPreparesModelDataAndSplit() throws {
        for family in ["llama", "gemma3", "gpt2"] {
            var c = TrainingConfig()
            c.model = Fixtures.path("tiny-\(family)/hf")
            c.data = Fixtures.path("data/input_output.jsonl")
            c.evalFraction = 0.25
            let run = try TrainingRun.prepare(config: c)
            XCTAssertEqual(run.trainable.architecture, family)
            XCTAssertEqual(run.dataset?.format, .inputOutput)
            XCTAssertEqual(run.train.count + run.eval.count, run.dataset?.examples.count, family)
            XCTAssertGreaterThan(run.eval.count, 0, family)
            XCTAssertEqual(run.evalSource, .heldOut(fraction: 0.25))
            let trainer = try run.trainer(runDirectory: nil)
            XCTAssertGreaterThan(trainer.trainableParameterCount, 0, family)
        }
    }

    func testRefusesMissingDataBeforeLoading() {
        var c = TrainingConfig()
        c.data = nil
        XCTAssertThrowsError(try TrainingRun.prepare(config: c)) { e in XCTAssertTrue("\(e)".contains("data"), "\(e)") }
    }
}
