/// Byte-pair-encoding model: vocabulary, ranked merges, and the merge loop
/// (HF `tokenizers` `models::bpe::BPE`, whose results it reproduces exactly).
final class BPEModel: TokenModel, @unchecked Sendable {
    /// Token text (exact bytes) → id.
    let vocab: [TokenText: Int32]
    /// Id → token text (nil for ids the model does not define).
    let idToToken: [String?]
    /// Merges in rank order, as pairs of token texts (kept for writing tokenizer.json).
    let merges: [(String, String)]
    /// Whether words arrive as raw bytes spelled with the byte-level alphabet.
    let byteLevel: Bool
    let unkToken: String?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool

    private let pairs: PairTable
    /// Byte-level: id of the single-character token for each byte (-1 if absent).
    private let byteIds: [Int32]
    /// Byte fallback: id of `<0xXX>` for each byte (-1 if absent).
    private let fallbackIds: [Int32]
    private let unkId: Int32?
    private let cache = WordCache()

    /// Builds the model. `merges` are pairs of token texts in rank order; every part and every
    /// concatenation must be in `vocab` (HF rejects such files too).
    init(vocab: [TokenText: Int32], merges: [(String, String)], byteLevel: Bool, unkToken: String? = nil,
         fuseUnk: Bool = false, byteFallback: Bool = false, ignoreMerges: Bool = false) throws {
        self.vocab = vocab
        self.merges = merges
        self.byteLevel = byteLevel
        self.unkToken = unkToken
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges

        let maxId = Int(vocab.values.max() ?? -1)
        var tokens = [String?](repeating: nil, count: maxId + 1)
        for (t, i) in vocab { tokens[Int(i)] = t.string }
        idToToken = tokens

        var table = PairTable(capacity: max(merges.count, 1))
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[TokenText(a)] else {
                throw TokenizerError.invalidMerge(index: rank, merge: "\(a) \(b)", reason: "\"\(a)\" is not in the vocabulary")
            }
            guard let ib = vocab[TokenText(b)] else {
                throw TokenizerError.invalidMerge(index: rank, merge: "\(a) \(b)", reason: "\"\(b)\" is not in the vocabulary")
            }
            guard let merged = vocab[TokenText(bytes: Array(a.utf8) + Array(b.utf8))] else {
                throw TokenizerError.invalidMerge(index: rank, merge: "\(a) \(b)", reason: "\"\(a + b)\" is not in the vocabulary")
            }
            table.insert(ia, ib, rank: Int32(rank), newId: merged)
        }
        pairs = table

        var bi = [Int32](repeating: -1, count: 256)
        var fb = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if byteLevel, let id = vocab[TokenText(String(Character(ByteLevel.byteToScalar[b])))] { bi[b] = id }
            let hex = String(b, radix: 16, uppercase: true)
            if let id = vocab[TokenText("<0x" + (hex.count == 1 ? "0" + hex : hex) + ">")] { fb[b] = id }
        }
        byteIds = bi
        fallbackIds = fb
        if let unkToken {
            guard let u = vocab[TokenText(unkToken)] else {
                throw TokenizerError.invalidField(field: "model.unk_token", source: "BPE model",
                                                  reason: "\"\(unkToken)\" is not in the vocabulary")
            }
            unkId = u
        } else {
            unkId = nil
        }
    }

    var vocabCount: Int { vocab.count }


    /// Appends the ids of one pre-tokenized word (raw UTF-8 bytes) to `out`.
    func encodeWord(_ word: ArraySlice<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        if word.count <= 256, let hit = cache.get(word) {
            out.append(contentsOf: hit)
            return
        }
        var ids: [Int32] = []
        if ignoreMerges {
            let text = byteLevel ? ByteLevel.encode(word) : String(decoding: word, as: UTF8.self)
            if let id = vocab[TokenText(text)] { ids = [id] }
        }
        if ids.isEmpty {
            ids = initialSymbols(word)
            mergeAll(&ids)
        }
        if word.count <= 256 { cache.put(word, ids) }
        out.append(contentsOf: ids)
    }

    /// The word's symbols before merging (HF `merge_word` without the merge loop).
    private func initialSymbols(_ word: ArraySlice<UInt8>) -> [Int32] {
        var syms: [Int32] = []
        syms.reserveCapacity(word.count)
        var pendingUnk = false
        func flushUnk() {
            if pendingUnk, let u = unkId { syms.append(u) }
            pendingUnk = false
        }
        func unknown() {
            guard unkId != nil else { return }  // no unk token: the character is dropped
            if pendingUnk && !fuseUnk { syms.append(unkId!) }
            pendingUnk = true
        }
        if byteLevel {
            for b in word {
                let id = byteIds[Int(b)]
                if id >= 0 { flushUnk(); syms.append(id) } else { unknown() }
            }
        } else {
            var i = word.startIndex
            while i < word.endIndex {
                let n = min(utf8Length(word[i]), word.endIndex - i)
                let chunk = word[i ..< i + n]
                if let id = vocab[TokenText(bytes: chunk)] {
                    flushUnk()
                    syms.append(id)
                } else if byteFallback, chunk.allSatisfy({ fallbackIds[Int($0)] >= 0 }) {
                    for b in chunk { syms.append(fallbackIds[Int(b)]) }
                } else {
                    unknown()
                }
                i += n
            }
        }
        flushUnk()
        return syms
    }

    /// Applies merges lowest rank first (leftmost on ties) until none applies.
    private func mergeAll(_ syms: inout [Int32]) {
        if syms.count < 2 { return }
        if syms.count <= 48 {
            mergeSmall(&syms)
        } else {
            mergeHeap(&syms)
        }
    }

    /// Quadratic scan: cheapest for the short words that make up almost all text.
    private func mergeSmall(_ syms: inout [Int32]) {
        var n = syms.count
        syms.withUnsafeMutableBufferPointer { s in
            while n > 1 {
                var bestRank = Int32.max, bestPos = -1, bestId: Int32 = 0
                for i in 0 ..< n - 1 {
                    if let m = pairs.get(s[i], s[i + 1]), m.rank < bestRank {
                        bestRank = m.rank; bestPos = i; bestId = m.newId
                    }
                }
                if bestPos < 0 { break }
                s[bestPos] = bestId
                var j = bestPos + 1
                while j < n - 1 { s[j] = s[j + 1]; j += 1 }
                n -= 1
            }
        }
        syms.removeLast(syms.count - n)
    }

    /// HF's priority-queue loop over a linked list of symbols, for long words.
    private func mergeHeap(_ syms: inout [Int32]) {
        let n = syms.count
        var prev = [Int](repeating: -1, count: n)
        var next = [Int](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1 }
        var heap = MergeHeap()
        for i in 0 ..< n - 1 {
            if let m = pairs.get(syms[i], syms[i + 1]) { heap.push(rank: m.rank, pos: i, newId: m.newId) }
        }
        while let top = heap.pop() {
            let pos = top.pos
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = next[pos]
            guard let m = pairs.get(syms[pos], syms[right]), m.newId == top.newId else { continue }
            syms[pos] = top.newId
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[next[right]] = pos }
            if prev[pos] >= 0, let m2 = pairs.get(syms[prev[pos]], syms[pos]) {
                heap.push(rank: m2.rank, pos: prev[pos], newId: m2.newId)
            }
            if next[pos] >= 0, let m3 = pairs.get(syms[pos], syms[next[pos]]) {
                heap.push(rank: m3.rank, pos: pos, newId: m3.newId)
            }
        }
        var result: [Int32] = []
        result.reserveCapacity(n)
        var i = 0
        while i >= 0 { result.append(syms[i]); i = next[i] }
        syms = result
    }
}

/// Binary min-heap of pending merges ordered by (rank, position).
private struct MergeHeap {
    struct Item { var rank: Int32; var pos: Int; var newId: Int32 }
    private var items: [Item] = []

    @inline(__always)
    private func less(_ a: Item, _ b: Item) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }

    mutating func push(rank: Int32, pos: Int, newId: Int32) {
        items.append(Item(rank: rank, pos: pos, newId: newId))
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if less(items[i], items[p]) { items.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func pop() -> Item? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && less(items[l], items[m]) { m = l }
                if r < items.count && less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}
