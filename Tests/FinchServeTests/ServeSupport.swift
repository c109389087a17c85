import FinchModels
@testable import FinchServe
import FinchTestSupport
import Foundation
import XCTest

/// The real SmolLM2 with three PEFT adapters of Tests/Fixtures/smollm2/peft (LoRA on every linear, DoRA
/// and rsLoRA on q/v), none active; loaded once for the test target.
enum ServeFixtures {
    static let adapters = ["lora": "lora_all_linear_r8", "dora": "dora_qv_r4", "rslora": "lora_qv_rslora_r4"]
    nonisolated(unsafe) private static var cached: LoadedModel?
    private static let lock = NSLock()

    /// Committed under Tests/Fixtures/smollm2/peft (Scripts/fixtures/make_peft_goldens.py).
    static func adapterPath(_ name: String) -> String { Fixtures.path("smollm2/peft/" + adapters[name]!) }

    static func model() throws -> LoadedModel {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        let lm = try LoadedModel.load(try Fixtures.smolLM2())
        for (name, _) in adapters.sorted(by: { $0.key < $1.key }) {
            try lm.model.loadAdapter(directory: adapterPath(name), name: name)
        }
        lm.model.setActiveAdapter(nil)
        cached = lm
        return lm
    }

    /// Runs requests through a fresh engine until all finish; returns each one's events.
    static func run(_ requests: [GenerationRequest], lm: LoadedModel, maxBatch: Int = 16,
                    stepTokens: Int = 512) -> (events: [[GenerationEvent]], reports: [BatchEngine.StepReport]) {
        let engine = BatchEngine(lm: lm, maxBatch: maxBatch, stepTokens: stepTokens)
        var events = [[GenerationEvent]](repeating: [], count: requests.count)
        for (i, r) in requests.enumerated() { engine.submit(r, emit: { events[i].append($0) }) }
        var reports: [BatchEngine.StepReport] = []
        while let r = engine.step() { reports.append(r) }
        return (events, reports)
    }
}

/// Same greedy tokens, or a divergence where the alone run's top two tokens were a near tie
/// (batched products round differently: a GEMM over the batch instead of the one-row kernel).
/// Returns the logit gap at the divergence, if any.
@discardableResult
func assertSameGreedy(_ batched: [GenerationEvent], _ alone: [GenerationEvent], _ label: String,
                      file: StaticString = #filePath, line: UInt = #line) -> Float? {
    let a = batched.generatedTokens, b = alone.generatedTokens
    guard let j = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) else {
        XCTAssertEqual(a, b, label, file: file, line: line)
        XCTAssertEqual(batched.finalText, alone.finalText, label, file: file, line: line)
        return nil
    }
    let top = alone.tokenLogprobs[j].top
    let gap = top[0].logprob - top[1].logprob
    print("\(label): token \(j) differs (\(a[j]) batched, \(b[j]) alone); alone's top-2 logit gap \(gap)")
    XCTAssertLessThan(gap, 2e-3, "\(label): diverged at token \(j) where the choice was not a near tie",
                      file: file, line: line)
    return gap
}

extension Array where Element == GenerationEvent {
    var generatedTokens: [Int] { compactMap { if case .token(let id, _, _) = $0 { id } else { nil } } }
    var tokenLogprobs: [TokenLogprob] { compactMap { if case .token(_, _, let lp) = $0 { lp } else { nil } } }
    var finalText: String? { compactMap { if case .finished(let c) = $0 { c.text } else { nil } }.first }
    var streamedText: String { compactMap { if case .token(_, let t, _) = $0 { t } else { nil } }.joined() }
    var finishReason: FinishReason? { compactMap { if case .finished(let c) = $0 { c.reason } else { nil } }.first }
    var promptScores: [TokenLogprob?]? { compactMap { if case .promptLogprobs(let s) = $0 { s } else { nil } }.first }
}
