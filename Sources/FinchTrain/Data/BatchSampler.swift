import FinchCore

/// Epoch-based batch order: deterministic shuffle from (seed, epoch); optional group_by_length; resumable.
///
/// Each epoch visits every example once. Its order is a pure function of `(seed, epoch)`:
/// a permutation drawn with ``SplitMix64/init(seed:stream:)`` keyed by the epoch (or file
/// order without `shuffle`). With `groupByLength`, the order is regrouped as Hugging Face's
/// `LengthGroupedSampler` does: cut into megabatches of `batchSize × m` examples
/// (`m = min(n / (4 × batchSize), 50)`, at least 1), each sorted by length, longest first,
/// and the longest example of all moved to the front, so batches hold similar lengths (less
/// padding) and the first batch shows the peak memory at once. The order is then cut into
/// batches of `batchSize`; the last, shorter one is kept unless `dropLast`.
///
/// ``state`` (epoch, batches already taken in it) is all that changes; saving it (or the
/// whole sampler, which is `Codable`) and restoring it yields exactly the same future batches.
///
/// ```swift
/// var sampler = try BatchSampler(lengths: examples.map(\.count), batchSize: 8, seed: 42, groupByLength: true)
/// let (epoch, indices) = sampler.next()
/// ```
public struct BatchSampler: Sendable, Codable {
    /// Where a sampler is: the epoch, and how many of its batches have been taken.
    public struct State: Sendable, Codable, Equatable {
        /// 0-based epoch of the next batch.
        public var epoch: Int
        /// Batches of `epoch` already taken; the next batch is `batches(epoch:)[position]`.
        public var position: Int

        public init(epoch: Int = 0, position: Int = 0) {
            self.epoch = epoch
            self.position = position
        }
    }

    /// Length (in tokens) of each example; only `groupByLength` looks at the values.
    public let lengths: [Int]
    /// Examples per batch.
    public let batchSize: Int
    /// Seed of the shuffle.
    public let seed: UInt64
    /// Shuffle each epoch (otherwise file order, or length groups of file order).
    public let shuffle: Bool
    /// Put examples of similar length together (HF `group_by_length`).
    public let groupByLength: Bool
    /// Leave out each epoch's last batch when it is short.
    public let dropLast: Bool
    /// The position of the next batch. Setting it (from a checkpoint) resumes there; a
    /// position at or past the end of the epoch moves on to the next epoch.
    public var state: State

    /// The batches of the epoch last used, so `next()` does not redraw them.
    private var cache: EpochBatches?

    private struct EpochBatches: Sendable {
        var epoch: Int
        var batches: [[Int]]
    }

    private enum CodingKeys: String, CodingKey {
        case lengths, batchSize, seed, shuffle, groupByLength, dropLast, state
    }

    /// A sampler at epoch 0, position 0.
    /// - Throws: ``DataError/invalidSampler(reason:)`` when there are no examples, `batchSize`
    ///   is below 1, or `dropLast` leaves no batch (fewer examples than `batchSize`).
    public init(lengths: [Int], batchSize: Int, seed: UInt64, shuffle: Bool = true,
                groupByLength: Bool = false, dropLast: Bool = false) throws(DataError) {
        self.lengths = lengths
        self.batchSize = batchSize
        self.seed = seed
        self.shuffle = shuffle
        self.groupByLength = groupByLength
        self.dropLast = dropLast
        self.state = State()
        if let problem = validationProblem { throw .invalidSampler(reason: problem) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lengths = try c.decode([Int].self, forKey: .lengths)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        seed = try c.decode(UInt64.self, forKey: .seed)
        shuffle = try c.decode(Bool.self, forKey: .shuffle)
        groupByLength = try c.decode(Bool.self, forKey: .groupByLength)
        dropLast = try c.decode(Bool.self, forKey: .dropLast)
        state = try c.decode(State.self, forKey: .state)
        if let problem = validationProblem {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "batch sampler: \(problem)"))
        }
    }

    private var validationProblem: String? {
        if lengths.isEmpty { return "there are no examples to sample" }
        if batchSize < 1 { return "batchSize is \(batchSize); it must be at least 1" }
        if dropLast && lengths.count < batchSize {
            return "dropLast with \(lengths.count) examples and batchSize \(batchSize) leaves no batch; "
                + "lower batchSize or turn dropLast off"
        }
        if state.epoch < 0 || state.position < 0 { return "state \(state) is negative" }
        return nil
    }

    /// Number of examples.
    public var count: Int { lengths.count }

    /// Batches in each epoch.
    public var batchesPerEpoch: Int {
        dropLast ? lengths.count / batchSize : (lengths.count + batchSize - 1) / batchSize
    }

    /// Batches taken since epoch 0 (the optimizer step count, without gradient accumulation).
    public var batchesTaken: Int { state.epoch * batchesPerEpoch + min(state.position, batchesPerEpoch) }

    /// The next batch: its epoch and the indices of its examples. Moves on to the next epoch
    /// after the last batch of one.
    public mutating func next() -> (epoch: Int, indices: [Int]) {
        if state.position >= batchesPerEpoch {
            state = State(epoch: state.epoch + 1, position: 0)
        }
        if cache?.epoch != state.epoch {
            cache = EpochBatches(epoch: state.epoch, batches: batches(epoch: state.epoch))
        }
        let batch = cache!.batches[state.position]
        let epoch = state.epoch
        state.position += 1
        return (epoch, batch)
    }

    /// The batches of `epoch`, in order (a pure function of the configuration and `epoch`).
    public func batches(epoch: Int) -> [[Int]] {
        let o = order(epoch: epoch)
        var out: [[Int]] = []
        out.reserveCapacity(batchesPerEpoch)
        var start = 0
        while start < o.count {
            let end = min(start + batchSize, o.count)
            if end - start < batchSize && dropLast { break }
            out.append(Array(o[start..<end]))
            start = end
        }
        return out
    }

    /// Every example index once, in the order `epoch` visits them.
    public func order(epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed, stream: UInt64(truncatingIfNeeded: epoch))
        let base = shuffle ? rng.permutation(lengths.count) : Array(0..<lengths.count)
        return groupByLength ? lengthGrouped(base) : base
    }

    /// HF `get_length_grouped_indices` applied to an order.
    private func lengthGrouped(_ order: [Int]) -> [Int] {
        let multiplier = max(1, min(lengths.count / (batchSize * 4), 50))
        let megabatchSize = batchSize * multiplier
        var megabatches: [[Int]] = []
        var start = 0
        while start < order.count {
            let end = min(start + megabatchSize, order.count)
            // Longest first; ties keep their shuffled order, so the result is deterministic.
            let sorted = order[start..<end].enumerated()
                .sorted { a, b in
                    let la = lengths[a.element], lb = lengths[b.element]
                    return la != lb ? la > lb : a.offset < b.offset
                }
                .map(\.element)
            megabatches.append(sorted)
            start = end
        }
        // The longest example of all goes first (the first one of its megabatch).
        var best = 0
        for (i, m) in megabatches.enumerated() where lengths[m[0]] > lengths[megabatches[best][0]] { best = i }
        if best != 0 {
            let first = megabatches[0][0]
            megabatches[0][0] = megabatches[best][0]
            megabatches[best][0] = first
        }
        return megabatches.flatMap { $0 }
    }
}
