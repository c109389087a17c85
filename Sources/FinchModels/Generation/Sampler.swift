import FinchCore
import Foundation

/// How the next token is chosen from the logits
public struct SamplingOptions: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0
    /// Keep the k most likely tokens (0 = off).
    public var topK: Int = 0
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    public var topP: Float = 1
    /// Drop tokens less likely than minP × the most likely one (0 = off).
    public var minP: Float = 0
    /// > 1 discourages tokens already in the prompt or output (CTRL's penalty, as transformers applies it).
    public var repetitionPenalty: Float = 1

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP
        self.repetitionPenalty = repetitionPenalty
    }

    /// Throws a readable error for values outside their range.
    public func validate() throws {
        if temperature < 0 || !temperature.isFinite { throw ModelError.badSetting(name: "temperature", value: "\(temperature)", allowed: "≥ 0") }
        if topK < 0 { throw ModelError.badSetting(name: "top-k", value: "\(topK)", allowed: "≥ 0") }
        if !(topP > 0 && topP <= 1) { throw ModelError.badSetting(name: "top-p", value: "\(topP)", allowed: "in (0, 1]") }
        if !(minP >= 0 && minP <= 1) { throw ModelError.badSetting(name: "min-p", value: "\(minP)", allowed: "in [0, 1]") }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite { throw ModelError.badSetting(name: "repetition penalty", value: "\(repetitionPenalty)", allowed: "> 0") }
    }
}

/// Picks tokens from logits: repetition penalty, then temperature, top-k, top-p and min-p
/// (transformers' order), then a draw from the remaining distribution.
public struct Sampler: Sendable {
    public var options: SamplingOptions
    public var random: SeededRandom

    public init(options: SamplingOptions, seed: UInt64) {
        self.options = options
        self.random = SeededRandom(seed: seed)
    }

    /// The next token for `logits` [V], given the tokens seen so far (for the repetition penalty).
    public mutating func next(logits: UnsafeBufferPointer<Float>, history: [Int]) -> Int {
        var scores = Array(logits)
        if options.repetitionPenalty != 1 {
            for t in Set(history) where t >= 0 && t < scores.count {
                let s = scores[t]
                scores[t] = s < 0 ? s * options.repetitionPenalty : s / options.repetitionPenalty
            }
        }
        if options.temperature == 0 { return Self.argmax(scores) }
        for i in scores.indices { scores[i] /= options.temperature }

        // Candidates sorted by score, most likely first.
        var order = Array(scores.indices)
        let k = options.topK > 0 ? min(options.topK, order.count) : order.count
        if k < order.count {
            order = Array(Self.topIndices(scores, k))
        } else {
            order.sort { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        }
        let maxScore = scores[order[0]]
        var probs = order.map { exp(scores[$0] - maxScore) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        var keep = probs.count
        if options.topP < 1 {
            var cum: Float = 0
            for i in probs.indices {
                cum += probs[i]
                if cum >= options.topP { keep = i + 1; break }
            }
        }
        if options.minP > 0 {
            let threshold = options.minP * probs[0]
            var m = 0
            while m < keep && probs[m] >= threshold { m += 1 }
            keep = max(1, m)
        }
        let kept = probs[0..<keep]
        let sum = kept.reduce(0, +)
        var u = random.nextUnit() * sum
        for i in 0..<keep {
            u -= kept[i]
            if u < 0 { return order[i] }
        }
        return order[keep - 1]
    }

    /// Index of the largest value (first on ties, as torch.argmax).
    public static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for i in x.indices where x[i] > x[best] { best = i }
        return best
    }

    /// Indices of the k largest values, most likely first.
    static func topIndices(_ x: [Float], _ k: Int) -> [Int] {
        var heap: [Int] = []   // min-heap by value of the k best so far
        heap.reserveCapacity(k)
        func less(_ a: Int, _ b: Int) -> Bool { x[a] < x[b] || (x[a] == x[b] && a > b) }
        func siftDown(_ i0: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && less(heap[l], heap[m]) { m = l }
                if r < heap.count && less(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m); i = m
            }
        }
        for i in x.indices {
            if heap.count < k {
                heap.append(i)
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if less(heap[c], heap[p]) { heap.swapAt(c, p); c = p } else { break }
                }
            } else if less(heap[0], i) {
                heap[0] = i
                siftDown(0)
            }
        }
        return heap.sorted { less($1, $0) }
    }
}
