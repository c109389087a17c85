import FinchCore
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import XCTest

/// Batched serving on a mixture-of-experts model with adapters on the experts: each expert runs
/// over the rows routed to it gathered together, rows of different requests (and adapters) mixed,
/// so the per-row adapters must follow their rows into every expert. A batch of three sequences
/// (the base, adapter a, adapter b; all-linear, so the router and every expert's w1 / w2 / w3 carry
/// LoRA) gives each sequence the logits it gets alone with its adapter active, for the prompt and
/// for a decoded step.
final class MixtralServingTests: XCTestCase {
    /// Measured 4.8e-7 (matrix products blocked differently for a different number of rows).
    static let tolerance: Float = 1.5e-6

    func testPerRowAdaptersOnExpertsMatchEachAlone() throws {
        let lm = try LoadedModel.load(FamilyTests.dir("mixtral") + "/hf")
        let m = try XCTUnwrap(lm.model as? DecoderModel)
        try m.attachRandomizedAdapter(r: 2, name: "a")
        try m.attachRandomizedAdapter(r: 4, name: "b")
        var expertLayers = 0
        m.forEachLoRALinear { l in if l.name.contains(".experts.") && l.adapters["a"] != nil && l.adapters["b"] != nil { expertLayers += 1 } }
        XCTAssertEqual(expertLayers, 2 * 4 * 3, "both adapters on every expert's w1, w2, w3 in both layers")

        let (e, _) = try FamilyTests.expected("mixtral")
        let prompts = [e.sequences[0], e.sequences[1], Array(e.sequences[1].reversed())]
        let adapters: [String?] = [nil, "a", "b"]
        let next = [5, 17, 29]

        // Each alone, with its adapter active: the prompt's logits, then one decoded token's.
        var alone: [(prompt: [Float], step: [Float])] = []
        for (p, a) in zip(prompts, adapters) {
            m.setActiveAdapter(a)
            let cache = m.makeCache()
            let first = try m.forward([SequenceInput(tokens: p, cache: cache)], logits: .all).values.array
            let second = try m.forward([SequenceInput(tokens: [next[alone.count]], cache: cache)], logits: .all).values.array
            alone.append((first, second))
        }
        m.setActiveAdapter(nil)

        // Together, each run of rows with its own adapter.
        func spans(_ lengths: [Int]) -> [AdapterSpan] {
            var start = 0
            return zip(lengths, adapters).map { n, a in defer { start += n }; return AdapterSpan(rows: start..<(start + n), adapter: a) }
        }
        let caches = prompts.map { _ in m.makeCache() }
        let batched = try m.forward(zip(prompts, caches).map { SequenceInput(tokens: $0, cache: $1) }, logits: .all,
                                    context: PassContext(backend: m.backend, rowAdapters: spans(prompts.map(\.count))))
        let stepped = try m.forward(zip(next, caches).map { SequenceInput(tokens: [$0], cache: $1) }, logits: .all,
                                    context: PassContext(backend: m.backend, rowAdapters: spans([1, 1, 1])))
        let v = batched.vocabSize
        var worst: Float = 0
        for s in 0..<3 {
            let together = Array(batched.values.array[(batched.rows[s].lowerBound * v)..<(batched.rows[s].upperBound * v)])
            let step = Array(stepped.values.array[(stepped.rows[s].lowerBound * v)..<(stepped.rows[s].upperBound * v)])
            worst = max(worst, maxAbsDiff(together, alone[s].prompt), maxAbsDiff(step, alone[s].step))
            XCTAssertLessThanOrEqual(maxAbsDiff(together, alone[s].prompt), Self.tolerance, "sequence \(s) (\(adapters[s] ?? "base")) prompt")
            XCTAssertLessThanOrEqual(maxAbsDiff(step, alone[s].step), Self.tolerance, "sequence \(s) (\(adapters[s] ?? "base")) step")
        }
        print("[mixtral] per-row adapters on experts: batched within \(worst) of each alone")

        // The adapters matter: a and b on the base's prompt move its logits.
        for a in ["a", "b"] {
            m.setActiveAdapter(a)
            let with = try m.forward([SequenceInput(tokens: prompts[0], cache: m.makeCache())], logits: .all).values.array
            XCTAssertGreaterThan(maxAbsDiff(with, alone[0].prompt), 1e-3, "adapter \(a) changes the logits")
        }
    }
}
