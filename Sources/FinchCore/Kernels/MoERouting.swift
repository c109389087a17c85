#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Dimension letters: N rows (tokens), E experts, K experts chosen per row, L layers (of the auxiliary loss).

/// A mixture-of-experts router's choice and its backward, as transformers computes it (Mixtral's
/// `MixtralTopKRouter`, Qwen2-MoE, Qwen3-MoE, OLMoE): per row p = softmax(logits) in f32, the K largest
/// p (by decreasing p; of equal p the lower expert first), and as their weights those p, divided by their
/// sum when `normalize` (Mixtral always; the others by `norm_topk_prob`). `groups` lists the rows each
/// expert serves, so that its products run over its rows together and unchosen experts are not touched.
/// The load-balancing loss is the Switch Transformer's as transformers' `load_balancing_loss_func` sums it
/// over layers: E · Σ_e (tokens routed to e / rows) · (mean p_e); its gradient flows through p only.
public enum MoERouting {
    /// One layer's routing of N rows.
    public struct Routes: Sendable {
        public let rows: Int, experts: Int, topK: Int
        public let normalized: Bool
        /// p = softmax(logits) [N, E].
        public var probabilities: [Float]
        /// The chosen experts [N, K], by decreasing p.
        public var chosen: [Int32]
        /// Their weights [N, K] (p, or p over the chosen p's sum).
        public var weights: [Float]
    }

    /// Routes `rows` rows of router logits [N, E].
    public static func route(logits: UnsafePointer<Float>, rows n: Int, experts e: Int, topK k: Int, normalize: Bool) -> Routes {
        precondition(k >= 1 && k <= e, "top-k \(k) of \(e) experts")
        var probs = [Float](repeating: 0, count: n * e)
        var chosen = [Int32](repeating: 0, count: n * k), weights = [Float](repeating: 0, count: n * k)
        for r in 0..<n {
            let x = logits + r * e
            var m = -Float.infinity
            for j in 0..<e { m = max(m, x[j]) }
            var sum: Float = 0
            for j in 0..<e { let v = expf(x[j] - m); probs[r * e + j] = v; sum += v }
            let inv = 1 / sum
            for j in 0..<e { probs[r * e + j] *= inv }
            // Top-k by insertion: K is small (2-8).
            var top: [(p: Float, j: Int)] = []
            top.reserveCapacity(k + 1)
            for j in 0..<e {
                let p = probs[r * e + j]
                if top.count == k, p <= top[k - 1].p { continue }
                var at = top.count
                while at > 0 && top[at - 1].p < p { at -= 1 }
                top.insert((p, j), at: at)
                if top.count > k { top.removeLast() }
            }
            var total: Float = 0
            for t in top { total += t.p }
            for (i, t) in top.enumerated() {
                chosen[r * k + i] = Int32(t.j)
                weights[r * k + i] = normalize ? t.p / total : t.p
            }
        }
        return Routes(rows: n, experts: e, topK: k, normalized: normalize, probabilities: probs, chosen: chosen, weights: weights)
    }

    /// dLogits [N, E] (+)= the gradient of the weights' loss given dWeights [N, K]: through the
    /// normalization (w_i = p_i / S: dp_i = (dw_i − Σ_j dw_j w_j) / S) and the softmax
    /// (dlogit_e = p_e (dp_e − Σ_j dp_j p_j)).
    public static func backward(dLogits: UnsafeMutablePointer<Float>, dWeights: UnsafePointer<Float>, routes: Routes, accumulate: Bool) {
        let e = routes.experts, k = routes.topK
        var dp = [Float](repeating: 0, count: e)
        for r in 0..<routes.rows {
            for j in 0..<e { dp[j] = 0 }
            if routes.normalized {
                var s: Float = 0, dot: Float = 0
                for i in 0..<k {
                    s += routes.probabilities[r * e + Int(routes.chosen[r * k + i])]
                    dot += dWeights[r * k + i] * routes.weights[r * k + i]
                }
                for i in 0..<k { dp[Int(routes.chosen[r * k + i])] = (dWeights[r * k + i] - dot) / s }
            } else {
                for i in 0..<k { dp[Int(routes.chosen[r * k + i])] = dWeights[r * k + i] }
            }
            softmaxBackward(dLogits: dLogits + r * e, dp: dp, p: routes.probabilities, row: r, experts: e, accumulate: accumulate)
        }
    }

    @inline(__always)
    static func softmaxBackward(dLogits: UnsafeMutablePointer<Float>, dp: [Float], p: [Float], row r: Int, experts e: Int, accumulate: Bool) {
        var dot: Float = 0
        for j in 0..<e { dot += dp[j] * p[r * e + j] }
        for j in 0..<e {
            let g = p[r * e + j] * (dp[j] - dot)
            dLogits[j] = accumulate ? dLogits[j] + g : g
        }
    }

    /// The rows each expert serves, in row order: expert x's entries are `entries[offsets[x] ..< offsets[x + 1]]`,
    /// each `row · K + slot` (its row, and which of the row's K choices it is).
    public struct Groups: Sendable {
        public var offsets: [Int]
        public var entries: [Int32]
        public func entries(of expert: Int) -> ArraySlice<Int32> { entries[offsets[expert]..<offsets[expert + 1]] }
        /// Experts that serve at least one row.
        public var used: [Int] { (0..<(offsets.count - 1)).filter { offsets[$0 + 1] > offsets[$0] } }
    }

    public static func groups(_ routes: Routes) -> Groups {
        let e = routes.experts, k = routes.topK
        var counts = [Int](repeating: 0, count: e + 1)
        for x in routes.chosen { counts[Int(x) + 1] += 1 }
        for j in 0..<e { counts[j + 1] += counts[j] }
        var next = counts, entries = [Int32](repeating: 0, count: routes.rows * k)
        for r in 0..<routes.rows {
            for i in 0..<k {
                let x = Int(routes.chosen[r * k + i])
                entries[next[x]] = Int32(r * k + i); next[x] += 1
            }
        }
        return Groups(offsets: counts, entries: entries)
    }

    /// The load-balancing loss of several layers' routes (every row counts):
    /// E · Σ_e (Σ_layers tokens routed to e / Σ rows) · (Σ_layers Σ_rows p_e / Σ rows).
    public static func loadBalancingLoss(_ layers: [Routes]) -> Double {
        guard let e = layers.first?.experts else { return 0 }
        var tally = LoadBalancingTally(experts: e)
        for l in layers { tally.add(l) }
        return tally.loss
    }

    /// dLogits of each layer [N_l, E] (+)= `scale` × the gradient of `loadBalancingLoss(layers)`: through the
    /// mean p only (the counts are not differentiable): dL/dp_{r,e} = E · f_e / rows, then the softmax.
    public static func loadBalancingBackward(_ layers: [Routes], scale: Float, dLogits: [UnsafeMutablePointer<Float>], accumulate: Bool) {
        precondition(dLogits.count == layers.count)
        guard let e = layers.first?.experts else { return }
        var tally = LoadBalancingTally(experts: e)
        for l in layers { tally.add(l) }
        let dp = tally.dProbabilities(scale: scale)
        for (l, routes) in layers.enumerated() { loadBalancingBackward(routes, dProbabilities: dp, dLogits: dLogits[l], accumulate: accumulate) }
    }

    /// One layer's share of the load-balancing loss's gradient: dLogits [N, E] (+)= the softmax backward of
    /// `dProbabilities` (`LoadBalancingTally.dProbabilities`, the same for every row of every layer).
    public static func loadBalancingBackward(_ routes: Routes, dProbabilities dp: [Float], dLogits: UnsafeMutablePointer<Float>, accumulate: Bool) {
        precondition(dp.count == routes.experts)
        for r in 0..<routes.rows {
            softmaxBackward(dLogits: dLogits + r * routes.experts, dp: dp, p: routes.probabilities, row: r, experts: routes.experts,
                            accumulate: accumulate)
        }
    }

    /// The load-balancing loss gathered one layer at a time (so a pass need not keep every layer's
    /// routes): tokens routed to each expert, each expert's summed p, rows.
    public struct LoadBalancingTally: Sendable {
        public private(set) var counts: [Double]
        public private(set) var probabilitySums: [Double]
        public private(set) var rows = 0
        public init(experts: Int) {
            counts = Array(repeating: 0, count: experts); probabilitySums = Array(repeating: 0, count: experts)
        }
        public var experts: Int { counts.count }

        public mutating func add(_ routes: Routes) {
            precondition(routes.experts == experts, "layers with different numbers of experts")
            for x in routes.chosen { counts[Int(x)] += 1 }
            for r in 0..<routes.rows { for j in 0..<experts { probabilitySums[j] += Double(routes.probabilities[r * experts + j]) } }
            rows += routes.rows
        }

        /// E · Σ_e (tokens routed to e / rows) · (mean p_e).
        public var loss: Double {
            guard rows > 0 else { return 0 }
            var s = 0.0
            for j in 0..<experts { s += counts[j] * probabilitySums[j] }
            return s * Double(experts) / (Double(rows) * Double(rows))
        }

        /// `scale` × ∂loss/∂p_{r,e} for any row of any layer: E · (tokens routed to e / rows) / rows.
        public func dProbabilities(scale: Float) -> [Float] {
            guard rows > 0 else { return Array(repeating: 0, count: experts) }
            let r = Double(rows)
            return counts.map { Float(Double(scale) * Double(experts) * ($0 / r) / r) }
        }
    }
}
