/// SentencePiece's Unigram model (T5, Flan-T5, mT5 …) as HF `tokenizers`' `models::unigram`
/// computes it, whose ids it reproduces: every piece has a log-probability score; a word is cut
/// into the pieces whose scores sum highest (Viterbi over the word's bytes, pieces found by a
/// prefix trie; of equal scores the path found first is kept); a character no piece starts with
/// becomes the unknown piece, scored 10 below the lowest score, and runs of unknown pieces are
/// fused into one. With `byteFallback`, an unknown run is spelled by `<0xXX>` pieces when all
/// exist.
final class UnigramModel: TokenModel, @unchecked Sendable {
    let vocab: [TokenText: Int32]
    let idToToken: [String?]
    /// Score per id (log-probability), as tokenizer.json lists them.
    let scores: [Double]
    let unkId: Int32
    let byteFallback: Bool
    var unkToken: String? { idToToken[Int(unkId)] }
    var byteLevel: Bool { false }

    /// tokenizers' `K_UNK_PENALTY`.
    static let unknownPenalty = 10.0
    private let unknownScore: Double
    /// The pieces' trie: children by (node << 8 | byte), and the id a node ends (-1: none).
    private var children: [UInt32: Int32] = [:]
    private var terminal: [Int32] = [-1]
    private let cache = WordCache()

    /// `pieces` in id order with their scores; `unkId` the unknown piece's id.
    init(pieces: [(String, Double)], unkId: Int?, byteFallback: Bool, source: String) throws {
        var vocab: [TokenText: Int32] = [:]
        vocab.reserveCapacity(pieces.count)
        for (i, p) in pieces.enumerated() { vocab[TokenText(p.0)] = Int32(i) }   // a repeated piece keeps its last id
        self.vocab = vocab
        idToToken = pieces.map(\.0)
        scores = pieces.map(\.1)
        // tokenizers fails at encode time on a character no piece covers when there is no unknown
        // piece; Finch's encode cannot fail, so such a model is refused when it loads.
        guard let unkId else {
            throw TokenizerError.unsupported(model: "Unigram", reason: "model.unk_id is null (in \(source)); Finch needs the unknown piece for characters no piece covers")
        }
        guard unkId >= 0 && unkId < pieces.count else {
            throw TokenizerError.invalidField(field: "model.unk_id", source: source,
                                              reason: "\(unkId) is not an id of the \(pieces.count) pieces")
        }
        self.unkId = Int32(unkId)
        self.byteFallback = byteFallback
        unknownScore = (scores.min() ?? 0) - Self.unknownPenalty
        for p in pieces {
            var node: Int32 = 0
            for b in p.0.utf8 {
                let key = UInt32(node) << 8 | UInt32(b)
                if let c = children[key] { node = c } else {
                    terminal.append(-1)
                    let c = Int32(terminal.count - 1)
                    children[key] = c
                    node = c
                }
            }
            terminal[Int(node)] = vocab[TokenText(p.0)]!
        }
    }

    /// Bytes of the UTF-8 character starting with `lead`.
    @inline(__always)
    private static func charLength(_ lead: UInt8) -> Int {
        lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
    }

    func encodeWord(_ word: ArraySlice<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        if word.count <= 256, let hit = cache.get(word) {
            out.append(contentsOf: hit)
            return
        }
        let ids = viterbi(Array(word))
        if word.count <= 256 { cache.put(word, ids) }
        out.append(contentsOf: ids)
    }

    private func viterbi(_ w: [UInt8]) -> [Int32] {
        let n = w.count
        // Best path ending at each byte offset: its score, where its last piece starts, the piece.
        var best = [Double](repeating: 0, count: n + 1)
        var start = [Int](repeating: -1, count: n + 1)
        var piece = [Int32](repeating: -1, count: n + 1)
        var at = 0
        while at < n {
            let here = best[at]
            let mblen = min(Self.charLength(w[at]), n - at)
            var single = false
            var node: Int32 = 0
            var end = at
            while end < n, let c = children[UInt32(node) << 8 | UInt32(w[end])] {
                node = c
                end += 1
                let id = terminal[Int(node)]
                guard id >= 0 else { continue }
                let candidate = scores[Int(id)] + here
                if start[end] < 0 || candidate > best[end] {
                    best[end] = candidate; start[end] = at; piece[end] = id
                }
                if end - at == mblen { single = true }
            }
            if !single {
                let e = at + mblen
                let candidate = unknownScore + here
                if start[e] < 0 || candidate > best[e] {
                    best[e] = candidate; start[e] = at; piece[e] = unkId
                }
            }
            at += mblen
        }
        // Back from the end; runs of unknown pieces are fused.
        var spans: [(Int, Int, Bool)] = []   // (from, to, unknown)
        var e = n
        while e > 0 {
            let s = start[e]
            let unknown = piece[e] == unkId
            if unknown, let last = spans.last, last.2, last.0 == e {
                spans[spans.count - 1] = (s, last.1, true)
            } else {
                spans.append((s, e, unknown))
            }
            e = s
        }
        var ids: [Int32] = []
        for (s, e, unknown) in spans.reversed() {
            if !unknown { ids.append(piece[e]); continue }
            // A fused run is looked up as a whole (tokenizers does), then spelled by bytes or unknown.
            if let id = vocab[TokenText(bytes: w[s ..< e])] { ids.append(id); continue }
            if byteFallback {
                let bytes = w[s ..< e].map { b -> Int32? in
                    let hex = String(b, radix: 16, uppercase: true)
                    return vocab[TokenText("<0x" + (hex.count == 1 ? "0" + hex : hex) + ">")]
                }
                if bytes.allSatisfy({ $0 != nil }) { ids += bytes.map { $0! }; continue }
            }
            ids.append(unkId)
        }
        return ids
    }
}
