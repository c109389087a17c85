@testable import FinchModels
import XCTest

final class SamplerTests: XCTestCase {
    let logits: [Float] = [1.0, 3.0, 2.5, -1.0, 0.5]

    func sample(_ o: SamplingOptions, seed: UInt64 = 7, history: [Int] = [], n: Int = 400) -> [Int] {
        var s = Sampler(options: o, seed: seed)
        return logits.withUnsafeBufferPointer { l in (0..<n).map { _ in s.next(logits: l, history: history) } }
    }

    func testGreedyIsArgmax() {
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 0))), [1])
    }

    func testTopKOneIsGreedy() {
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 1, topK: 1))), [1])
    }

    func testTopKLimitsChoices() {
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 5, topK: 2))), [1, 2])
    }

    func testTopPKeepsSmallestSetReachingP() {
        // softmax: p1 ≈ 0.50, p2 ≈ 0.30 → top-p 0.6 keeps {1, 2}.
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 1, topP: 0.6))), [1, 2])
    }

    func testMinP() {
        // p2 / p1 = e^-0.5 ≈ 0.61; p0 / p1 = e^-2 ≈ 0.14 → min-p 0.5 keeps {1, 2}.
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 1, minP: 0.5))), [1, 2])
    }

    func testSeedRepeatsAndDiffers() {
        let o = SamplingOptions(temperature: 1.5)
        XCTAssertEqual(sample(o, seed: 1), sample(o, seed: 1))
        XCTAssertNotEqual(sample(o, seed: 1), sample(o, seed: 2))
        XCTAssertEqual(Set(sample(o, seed: 3)).count, 5)   // high temperature reaches every token
    }

    func testFrequenciesFollowSoftmax() {
        let counts = sample(SamplingOptions(temperature: 1), n: 20_000).reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        let z = logits.map { exp($0) }.reduce(0, +)
        for (t, c) in counts {
            XCTAssertEqual(Double(c) / 20_000, Double(exp(logits[t]) / z), accuracy: 0.015, "token \(t)")
        }
    }

    func testRepetitionPenaltyAsTransformers() {
        // Penalty 2 on token 1: 3.0 / 2 = 1.5 < 2.5 → greedy picks 2.
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 0, repetitionPenalty: 2), history: [1])), [2])
        // Negative scores are multiplied: -1 * 2 = -2 (still last).
        XCTAssertEqual(Set(sample(SamplingOptions(temperature: 0, repetitionPenalty: 1.1), history: [3])), [1])
    }

    func testTopIndices() {
        XCTAssertEqual(Sampler.topIndices([0.1, 5, 3, 5, -2], 3), [1, 3, 2])
    }

    func testValidation() {
        XCTAssertThrowsError(try SamplingOptions(temperature: -1).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 0).validate())
        XCTAssertThrowsError(try SamplingOptions(repetitionPenalty: 0).validate())
        XCTAssertNoThrow(try SamplingOptions(temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05).validate())
    }

    func testStopStringHoldBack() {
        XCTAssertEqual(GenerationSession.heldBack("Hello <|e", stops: ["<|end|>"]), 3)
        XCTAssertEqual(GenerationSession.heldBack("Hello", stops: ["<|end|>"]), 0)
        XCTAssertEqual(GenerationSession.heldBack("ab", stops: ["bc", "abc"]), 2)
        let t = "one\nUser: two"
        XCTAssertEqual(GenerationSession.firstStop(in: t, stops: ["User:", "\n"]), t.firstIndex(of: "\n"))
    }
}
