import Foundation

/// A thread-safe cache from a word's bytes to its token ids. Cleared when it grows past `capacity`.
final class WordCache: @unchecked Sendable {
    private var map: [ArraySlice<UInt8>: [Int32]] = [:]
    private let lock = NSLock()
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    @inline(__always)
    func get(_ word: ArraySlice<UInt8>) -> [Int32]? {
        lock.lock(); defer { lock.unlock() }
        return map[word]
    }

    func put(_ word: ArraySlice<UInt8>, _ ids: [Int32]) {
        // Copy the key so the cache does not keep the caller's whole text alive.
        let key = ArraySlice(Array(word))
        lock.lock(); defer { lock.unlock() }
        if map.count >= capacity { map.removeAll(keepingCapacity: true) }
        map[key] = ids
    }

    func clear() {
        lock.lock(); defer { lock.unlock() }
        map.removeAll()
    }
}
