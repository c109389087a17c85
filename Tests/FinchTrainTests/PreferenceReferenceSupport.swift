import FinchFormats
import FinchModels
@testable import FinchTrain
import Foundation
import XCTest

/// What the DPO, SimPO and ORPO reference tests share: reading a fixture, the first batch against
/// TRL's (loss, metrics, LoRA gradients), and a 10-step curve against TRL's.
enum PreferenceReference {
    static func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// A temporary JSON-lines file of `lines` (the data-error tests' records).
    static func writeLines(_ lines: [String], prefix: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// |a − b| / max(1, |b|).
    static func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(1, abs(b)) }

    /// One training pass of `objective` over `pairs` (scale 1) on `model`, against TRL's first batch
    /// (`first`: its "loss" and "metrics") and gradients (`grads`' tensors `<prefix>.<parameter>.grad`,
    /// every one compared): the loss's relative error, the worst metric's, and the worst ‖Δ‖ / ‖TRL‖.
    static func firstBatchErrors(model: any TrainableModel, objective p: PreferenceObjective, pairs: [PreferencePair], adapter: String,
                                 first: [String: Any], grads: SafeTensorsFile, prefix: String,
                                 file: StaticString = #filePath, line: UInt = #line) throws -> (loss: Double, metric: Double, gradient: Double) {
        try firstBatchErrors(model: model, objective: p, examples: .pairs(pairs), adapter: adapter, first: first, grads: grads, prefix: prefix,
                             file: file, line: line)
    }

    /// The same for any preference examples (pairs or KTO's); every metric TRL logged for the batch is compared.
    static func firstBatchErrors(model: any TrainableModel, objective p: PreferenceObjective, examples: PreferenceExamples, adapter: String,
                                 first: [String: Any], grads: SafeTensorsFile, prefix: String,
                                 file: StaticString = #filePath, line: UInt = #line) throws -> (loss: Double, metric: Double, gradient: Double) {
        model.zeroGradients()
        let b = try p.train(model: model, examples: examples, scale: 1, options: TrainingPassOptions(), trained: adapter)
        let loss = relative(b.loss, try XCTUnwrap(first["loss"] as? Double, file: file, line: line))
        let metrics = try XCTUnwrap(first["metrics"] as? [String: Double], file: file, line: line)
        var metric = 0.0
        for name in p.metricNames {
            let want = metrics[name]
            XCTAssertEqual(b.metrics[name] == nil, want == nil, "\(name) logged by both or neither", file: file, line: line)
            if let got = b.metrics[name], let want { metric = max(metric, relative(got.mean, want)) }
        }
        var gradient = 0.0, checked = 0
        for (name, _, grad) in model.trainableParameters() {
            let key = "\(prefix).\(name).grad"
            let want = try grads.floats(key)
            XCTAssertEqual(want.count, grad.count, key, file: file, line: line)
            var d = 0.0, w = 0.0
            for i in 0..<min(want.count, grad.count) { d += pow(Double(grad[i] - want[i]), 2); w += pow(Double(want[i]), 2) }
            gradient = max(gradient, w > 0 ? (d / w).squareRoot() : d.squareRoot())
            checked += 1
        }
        XCTAssertEqual(checked, grads.tensorNames.filter { $0.hasPrefix(prefix + ".") }.count, "every LoRA gradient compared", file: file, line: line)
        return (loss, metric, gradient)
    }

    /// Trains with `trainer` and compares every step with TRL's `curve` ("loss", "rewards/margins",
    /// "rewards/accuracies" when logged, and the metrics `also`): the accuracies equal, and the worst
    /// relative error of loss, margins and `also`.
    static func curveError(_ trainer: Trainer, curve: [String: [Double]], label: String, also: [String] = [],
                           file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        var steps: [StepMetrics] = []
        try trainer.train { if case .step(let m, _) = $0 { steps.append(m) } }
        let wantLoss = try XCTUnwrap(curve["loss"], file: file, line: line)
        let wantMargin = try XCTUnwrap(curve["rewards/margins"], file: file, line: line)
        XCTAssertEqual(steps.count, wantLoss.count, label, file: file, line: line)
        var worst = 0.0
        for (i, m) in steps.enumerated() where i < wantLoss.count {
            worst = max(worst, relative(m.loss, wantLoss[i]), relative(m.objective["rewards/margins"] ?? .nan, wantMargin[i]))
            for key in also { worst = max(worst, relative(m.objective[key] ?? .nan, try XCTUnwrap(curve[key]?[i], key, file: file, line: line))) }
            if let accuracies = curve["rewards/accuracies"] {
                XCTAssertEqual(m.objective["rewards/accuracies"], accuracies[i], "\(label) step \(i + 1) accuracy", file: file, line: line)
            }
        }
        return worst
    }
}
