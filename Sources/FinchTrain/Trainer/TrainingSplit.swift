import FinchCore
import FinchModels

/// Holding out part of a dataset for evaluation.
public enum TrainingSplit {
    /// Splits off ⌈fraction · n⌉ examples (at least one, leaving at least one) chosen by a seeded
    /// shuffle; both parts keep the file order. Returns (train, eval).
    public static func holdOut<T>(_ examples: [T], fraction: Double, seed: UInt64) -> ([T], [T]) {
        guard fraction > 0, examples.count > 1 else { return (examples, []) }
        let k = min(examples.count - 1, max(1, Int((fraction * Double(examples.count)).rounded(.up))))
        var rng = SeededRandom(seed: seed ^ 0x5EED_E7A1)
        let held = Set(Array(0..<examples.count).shuffled(using: &rng).prefix(k))
        var train: [T] = [], eval: [T] = []
        for (i, e) in examples.enumerated() { if held.contains(i) { eval.append(e) } else { train.append(e) } }
        return (train, eval)
    }
}
