import FinchCore
import Foundation

/// Elo ratings from pairwise outcomes, as the QLoRA paper rates chatbots: every system starts at
/// 1000, each match moves both ratings by K · (score − expected) with K = 32, and since the result
/// depends on the order of the matches, the ratings are averaged over many random orders
/// ("tournaments") drawn from a seeded generator.
public enum Elo {
    /// One comparison of two systems.
    public struct Match: Sendable, Equatable {
        public var a: String
        public var b: String
        /// 1 when `a` won, 0 when `b` won, 0.5 for a tie.
        public var scoreA: Double
        public init(a: String, b: String, scoreA: Double) { self.a = a; self.b = b; self.scoreA = scoreA }
    }

    /// A system's rating over the tournaments.
    public struct Rating: Sendable, Equatable {
        public var system: String
        /// Mean over the tournaments.
        public var elo: Double
        /// Standard deviation over the tournaments.
        public var spread: Double
        public var wins: Int
        public var losses: Int
        public var ties: Int
        public var matches: Int { wins + losses + ties }
    }

    /// The expected score of a player rated `ra` against one rated `rb`.
    public static func expected(_ ra: Double, _ rb: Double) -> Double {
        1 / (1 + pow(10, (rb - ra) / 400))
    }

    /// Ratings after playing `matches` once, in the order given.
    public static func play(_ matches: [Match], k: Double = 32, initial: Double = 1000) -> [String: Double] {
        var r: [String: Double] = [:]
        for m in matches {
            let ra = r[m.a] ?? initial, rb = r[m.b] ?? initial
            let ea = expected(ra, rb)
            r[m.a] = ra + k * (m.scoreA - ea)
            r[m.b] = rb + k * ((1 - m.scoreA) - (1 - ea))
        }
        return r
    }

    /// Mean ratings over `tournaments` random orders of `matches`, best first; with `tournaments`
    /// 1 the matches are played once in the order given.
    public static func ratings(_ matches: [Match], tournaments: Int = 10_000, seed: UInt64 = 42, k: Double = 32,
                               initial: Double = 1000) -> [Rating] {
        var systems: [String] = []
        for m in matches { for s in [m.a, m.b] where !systems.contains(s) { systems.append(s) } }
        var sum = [String: Double](), sumSq = [String: Double]()
        var rng = SeededRandom(seed: seed)
        var order = matches
        let runs = max(1, tournaments)
        for t in 0..<runs {
            if tournaments > 1 || t > 0 { order.shuffle(using: &rng) }
            let r = play(order, k: k, initial: initial)
            for s in systems {
                let v = r[s] ?? initial
                sum[s, default: 0] += v
                sumSq[s, default: 0] += v * v
            }
        }
        return systems.map { s in
            let mean = sum[s]! / Double(runs)
            let variance = max(0, sumSq[s]! / Double(runs) - mean * mean)
            var w = 0, l = 0, ti = 0
            for m in matches where m.a == s || m.b == s {
                let mine = m.a == s ? m.scoreA : 1 - m.scoreA
                if mine == 1 { w += 1 } else if mine == 0 { l += 1 } else { ti += 1 }
            }
            return Rating(system: s, elo: mean, spread: variance.squareRoot(), wins: w, losses: l, ties: ti)
        }.sorted { $0.elo > $1.elo || ($0.elo == $1.elo && $0.system < $1.system) }
    }

    /// The ratings as a Markdown table.
    public static func table(_ ratings: [Rating]) -> String {
        var out = "| rank | system | Elo | ± | wins | ties | losses |\n|---|---|---|---|---|---|---|\n"
        for (i, r) in ratings.enumerated() {
            out += "| \(i + 1) | \(r.system) | \(String(format: "%.0f", r.elo)) | \(String(format: "%.0f", r.spread)) | \(r.wins) | \(r.ties) | \(r.losses) |\n"
        }
        return out
    }
}
