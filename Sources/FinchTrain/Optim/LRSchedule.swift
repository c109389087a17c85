import Foundation

/// Learning-rate schedules as Hugging Face's `get_scheduler` builds them. The rate of optimizer
/// step k (0-based) is `base · factor(k)`; warmup rises linearly from 0: factor = k / warmup.
public struct LRSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Constant after warmup (HF `constant` / `constant_with_warmup`).
        case constant
        /// Linear decay to 0 at the last step.
        case linear
        /// Half a cosine down to 0 at the last step.
        case cosine
    }
    public var kind: Kind
    public var base: Double
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(kind: Kind, base: Double, warmupSteps: Int, totalSteps: Int) {
        self.kind = kind; self.base = base; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }

    /// Warmup steps from a ratio of the total, as HF's `get_warmup_steps`: ⌈ratio · total⌉.
    public static func warmup(ratio: Double, totalSteps: Int) -> Int { Int((ratio * Double(totalSteps)).rounded(.up)) }

    /// The learning rate of optimizer step `step` (0-based).
    public func rate(at step: Int) -> Double {
        let k = Double(step), w = Double(warmupSteps), n = Double(totalSteps)
        if step < warmupSteps { return base * k / max(1, w) }
        switch kind {
        case .constant: return base
        case .linear: return base * max(0, (n - k) / max(1, n - w))
        case .cosine:
            let progress = (k - w) / max(1, n - w)
            return base * max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}
