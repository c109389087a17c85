import FinchCore
@testable import FinchTrain
import Foundation
import XCTest

/// BatchSampler: deterministic epochs, resume, group_by_length, drop_last; SplitMix64.
final class DataSamplerTests: XCTestCase {
    func testSplitMix64KnownValues() {
        // Reference values of SplitMix64 from seed 0 (as in the xoshiro authors' splitmix64.c).
        var r = SplitMix64(seed: 0)
        XCTAssertEqual(r.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(r.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(r.next(), 0x06C4_5D18_8009_454F)
    }

    func testBoundedDrawsAreInRangeAndRoughlyUniform() {
        var r = SplitMix64(seed: 7, stream: 3)
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<60_000 { counts[Int(r.next(below: 6))] += 1 }
        XCTAssertTrue(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
    }

    func testEachEpochIsAPermutationAndAPureFunctionOfSeedAndEpoch() throws {
        let s = try BatchSampler(lengths: Array(repeating: 1, count: 103), batchSize: 10, seed: 42)
        XCTAssertEqual(s.batchesPerEpoch, 11)
        for epoch in 0..<3 {
            let batches = s.batches(epoch: epoch)
            XCTAssertEqual(batches.count, 11)
            XCTAssertEqual(batches.last?.count, 3)
            XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(0..<103))
        }
        XCTAssertNotEqual(s.order(epoch: 0), s.order(epoch: 1))
        XCTAssertNotEqual(s.order(epoch: 0), Array(0..<103))
        let same = try BatchSampler(lengths: Array(repeating: 5, count: 103), batchSize: 10, seed: 42)
        XCTAssertEqual(same.order(epoch: 1), s.order(epoch: 1))
        let other = try BatchSampler(lengths: Array(repeating: 1, count: 103), batchSize: 10, seed: 43)
        XCTAssertNotEqual(other.order(epoch: 0), s.order(epoch: 0))
    }

    func testNextWalksEpochsInOrder() throws {
        var s = try BatchSampler(lengths: Array(repeating: 1, count: 7), batchSize: 3, seed: 1)
        var seen: [(Int, [Int])] = []
        for _ in 0..<7 { seen.append(s.next()) }
        XCTAssertEqual(seen.map(\.0), [0, 0, 0, 1, 1, 1, 2])
        XCTAssertEqual(seen[0..<3].map(\.1), s.batches(epoch: 0))
        XCTAssertEqual(seen[3..<6].map(\.1), s.batches(epoch: 1))
        XCTAssertEqual(seen[6].1, s.batches(epoch: 2)[0])
        XCTAssertEqual(s.state, BatchSampler.State(epoch: 2, position: 1))
        XCTAssertEqual(s.batchesTaken, 7)
    }

    func testNoShuffleKeepsFileOrder() throws {
        var s = try BatchSampler(lengths: Array(repeating: 1, count: 5), batchSize: 2, seed: 9, shuffle: false)
        XCTAssertEqual([s.next().indices, s.next().indices, s.next().indices, s.next().indices], [[0, 1], [2, 3], [4], [0, 1]])
    }

    func testResumeFromStateYieldsTheSameFutureBatches() throws {
        let lengths = (0..<50).map { ($0 * 37) % 23 + 1 }
        var a = try BatchSampler(lengths: lengths, batchSize: 4, seed: 2024, groupByLength: true)
        for _ in 0..<17 { _ = a.next() }
        let saved = a.state
        var expected: [[Int]] = []
        for _ in 0..<40 { expected.append(a.next().indices) }

        var b = try BatchSampler(lengths: lengths, batchSize: 4, seed: 2024, groupByLength: true)
        b.state = saved
        XCTAssertEqual((0..<40).map { _ in b.next().indices }, expected)
    }

    func testCodableRoundTripResumesExactly() throws {
        var a = try BatchSampler(lengths: (1...30).map { $0 % 7 }, batchSize: 4, seed: 5, dropLast: true)
        for _ in 0..<9 { _ = a.next() }
        let data = try JSONEncoder().encode(a)
        var b = try JSONDecoder().decode(BatchSampler.self, from: data)
        XCTAssertEqual(b.state, a.state)
        for _ in 0..<20 { XCTAssertTrue(a.next() == b.next()) }
        // The state alone is Codable too, for checkpoints that store it apart.
        let state = try JSONDecoder().decode(BatchSampler.State.self, from: JSONEncoder().encode(a.state))
        XCTAssertEqual(state, a.state)
    }

    func testDecodingRejectsAnImpossibleSampler() throws {
        let json = #"{"lengths": [], "batchSize": 2, "seed": 1, "shuffle": true, "groupByLength": false, "dropLast": false, "state": {"epoch": 0, "position": 0}}"#
        XCTAssertThrowsError(try JSONDecoder().decode(BatchSampler.self, from: Data(json.utf8)))
    }

    func testDropLast() throws {
        var s = try BatchSampler(lengths: Array(repeating: 1, count: 10), batchSize: 4, seed: 3, dropLast: true)
        XCTAssertEqual(s.batchesPerEpoch, 2)
        let epoch0 = [s.next(), s.next()]
        XCTAssertTrue(epoch0.allSatisfy { $0.epoch == 0 && $0.indices.count == 4 })
        XCTAssertEqual(Set(epoch0.flatMap(\.indices)).count, 8)
        XCTAssertEqual(s.next().epoch, 1)
        let keep = try BatchSampler(lengths: Array(repeating: 1, count: 10), batchSize: 4, seed: 3)
        XCTAssertEqual(keep.batches(epoch: 0).map(\.count), [4, 4, 2])
    }

    func testGroupByLengthSortsMegabatchesLongestFirst() throws {
        // 400 examples, batch 4: megabatches of 4 × min(400 / 16, 50) = 100.
        let lengths = (0..<400).map { ($0 * 7919) % 397 + 1 }
        let s = try BatchSampler(lengths: lengths, batchSize: 4, seed: 11, groupByLength: true)
        let order = s.order(epoch: 0)
        XCTAssertEqual(order.sorted(), Array(0..<400))
        XCTAssertEqual(lengths[order[0]], lengths.max())
        let plain = try BatchSampler(lengths: lengths, batchSize: 4, seed: 11).order(epoch: 0)
        var moved = 0
        for m in 0..<4 {
            let slice = Array(order[(m * 100)..<(m * 100 + 100)])
            // The shuffled order's megabatch, sorted by length, longest first; only the swap
            // that brings the longest example to the front moves anything between megabatches.
            moved += Set(slice).symmetricDifference(plain[(m * 100)..<(m * 100 + 100)]).count
            let tail = slice.dropFirst().map { lengths[$0] }
            XCTAssertEqual(tail, tail.sorted(by: >))
        }
        XCTAssertLessThanOrEqual(moved, 4)
        // Batches hold similar lengths: far less spread than unsorted batches.
        func spread(_ o: [Int]) -> Int {
            stride(from: 0, to: o.count, by: 4).map { i in
                let l = o[i..<min(i + 4, o.count)].map { lengths[$0] }
                return l.max()! - l.min()!
            }.reduce(0, +)
        }
        XCTAssertLessThan(spread(order) * 5, spread(plain))
        XCTAssertEqual(s.order(epoch: 0), order)
        XCTAssertNotEqual(s.order(epoch: 1), order)
    }

    func testSmallDatasetUsesOneBatchMegabatches() throws {
        let lengths = [3, 9, 1, 7, 5, 2]
        let s = try BatchSampler(lengths: lengths, batchSize: 2, seed: 0, shuffle: false, groupByLength: true)
        // multiplier max(1, 6 / 8) = 1: megabatches are the batches [0,1] [2,3] [4,5], each sorted,
        // then the longest example (1, length 9) is already first.
        XCTAssertEqual(s.batches(epoch: 0), [[1, 0], [3, 2], [4, 5]])
    }

    func testInvalidArguments() {
        for (lengths, batch, dropLast) in [([Int](), 2, false), ([1, 2], 0, false), ([1, 2, 3], 4, true)] {
            XCTAssertThrowsError(try BatchSampler(lengths: lengths, batchSize: batch, seed: 0, dropLast: dropLast)) { e in
                guard case DataError.invalidSampler = e else { return XCTFail("\(e)") }
            }
        }
    }
}
