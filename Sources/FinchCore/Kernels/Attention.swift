import CFinchKernels

// Dimension letters: N rows (new tokens of all sequences), H query heads, G key/value heads,
// D head dim, T cached positions, S capacity of a cache.

/// One sequence's share of an attention call: its new rows and its key/value cache.
public struct AttentionSegment: @unchecked Sendable {
    /// First row of this sequence in q / out.
    public var rowStart: Int
    /// New rows (tokens) of this sequence; they sit at positions pastLength ..< pastLength + rowCount.
    public var rowCount: Int
    /// Tokens already in the cache before these rows.
    public var pastLength: Int
    /// [G, S, D] keys, rows 0 ..< pastLength + rowCount filled.
    public var keys: UnsafePointer<Float>
    /// [G, S, D] values.
    public var values: UnsafePointer<Float>
    /// S: positions per head in keys / values.
    public var capacity: Int

    public init(rowStart: Int, rowCount: Int, pastLength: Int, keys: UnsafePointer<Float>,
                values: UnsafePointer<Float>, capacity: Int) {
        self.rowStart = rowStart; self.rowCount = rowCount; self.pastLength = pastLength
        self.keys = keys; self.values = values; self.capacity = capacity
    }
}

/// Causal grouped-query attention over a key/value cache (softmax in f32).
public enum Attention {
    /// Query rows per task: small enough to balance threads, large enough for efficient GEMMs.
    static let rowBlock = 64

    /// out [N, H, D] = softmax(q·kᵀ · scale + causal mask) · v for every segment.
    /// Query head h reads key/value head h / (H / G). With a `window` w, the query at position p
    /// sees keys p − w + 1 … p only (transformers' sliding-window mask).
    public static func forward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                               segments: [AttentionSegment], heads: Int, kvHeads: Int, headDim d: Int,
                               scale: Float, window: Int? = nil) {
        Profile.measure(.attention) {
            forwardSegments(out: out, q: q, segments: segments, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, window: window)
        }
    }

    static func forwardSegments(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                                segments: [AttentionSegment], heads: Int, kvHeads: Int, headDim d: Int,
                                scale: Float, window: Int?) {
        struct Task { var segment: Int; var head: Int; var r0: Int; var r1: Int }
        var tasks: [Task] = []
        var maxKeys = 0
        for (si, s) in segments.enumerated() {
            maxKeys = max(maxKeys, s.pastLength + s.rowCount)
            for h in 0..<heads {
                var r = 0
                while r < s.rowCount {
                    tasks.append(Task(segment: si, head: h, r0: r, r1: min(r + rowBlock, s.rowCount)))
                    r += rowBlock
                }
            }
        }
        let group = heads / kvHeads
        let rowStride = heads * d
        let cost = tasks.isEmpty ? 0 : (maxKeys * d * 4 * rowBlock) / max(1, tasks.count / max(1, segments.count * heads))
        tasks.withUnsafeBufferPointer { tasks in
            Parallel.forEachRange(tasks.count, costPerItem: max(cost, 1)) { range in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * maxKeys)
                defer { scores.deallocate() }
                for t in range {
                    let task = tasks[t]
                    let s = segments[task.segment]
                    let rows = task.r1 - task.r0
                    // Keys first ..< last the block's rows see (causal; the window drops early ones).
                    let last = s.pastLength + task.r1
                    let first = window.map { max(0, s.pastLength + task.r0 + 1 - $0) } ?? 0
                    let keysUsed = last - first
                    let g = task.head / group
                    let k = s.keys + g * s.capacity * d + first * d
                    let v = s.values + g * s.capacity * d + first * d
                    let qh = q + (s.rowStart + task.r0) * rowStride + task.head * d
                    let oh = out + (s.rowStart + task.r0) * rowStride + task.head * d
                    if rows == 1 {
                        // Decoding: one query row; dot products and a weighted sum of value rows
                        // (a GEMM call per one-row product costs more than the product).
                        let (lo, hi) = visibleKeys(position: s.pastLength + task.r0, window: window, first: first)
                        for j in lo..<hi { scores[j] = scale * finch_dot_f32(qh, k + j * d, d) }
                        softmaxInPlace(scores + lo, count: hi - lo)
                        oh.update(repeating: 0, count: d)
                        for j in lo..<hi { finch_axpy_f32(oh, scores[j], v + j * d, d) }
                        continue
                    }
                    // scores [rows, keysUsed] = scale · q_h · kᵀ
                    GEMM.f32Serial(m: rows, n: keysUsed, k: d, a: qh, lda: rowStride, b: k, ldb: d,
                                   bTransposed: true, c: scores, ldc: keysUsed, alpha: scale, accumulate: false)
                    for i in 0..<rows {
                        let row = scores + i * keysUsed
                        let (lo, hi) = visibleKeys(position: s.pastLength + task.r0 + i, window: window, first: first)
                        for j in 0..<lo { row[j] = 0 }
                        softmaxInPlace(row + lo, count: hi - lo)
                        for j in hi..<keysUsed { row[j] = 0 }
                    }
                    // out_h [rows, D] = scores · v
                    GEMM.f32Serial(m: rows, n: d, k: keysUsed, a: scores, lda: keysUsed, b: v, ldb: d,
                                   bTransposed: false, c: oh, ldc: rowStride, accumulate: false)
                }
            }
        }
    }

    /// Keys lo ..< hi (relative to key `first`) that the query at `position` sees: causal, and
    /// within the last `window` positions when there is a window.
    @inline(__always)
    static func visibleKeys(position p: Int, window: Int?, first: Int) -> (lo: Int, hi: Int) {
        let lo = window.map { max(0, p + 1 - $0) } ?? 0
        return (lo - first, p + 1 - first)
    }

    /// Numerically stable softmax of `count` values in place.
    @inline(__always)
    public static func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        finch_softmax(x, n)
    }
}

// MARK: - Training (no cache; the sequences of a batch packed as rows)
//
// q [N, H, D], k and v [N, G, D], out [N, H, D], logsumexp [N, H]: row n of every tensor is the
// same token; a sequence occupies a contiguous range of rows and attends causally within it.
// Backward recomputes the probabilities from q, k and the saved log-sum-exp (as flash attention
// does), so no [T, T] matrix outlives one (sequence, head, row block) task.

extension Attention {
    /// One (sequence, query head, block of query rows) unit of work.
    struct TrainingTask {
        var start: Int      // first row of the sequence
        var head: Int
        var r0: Int, r1: Int  // query rows r0 ..< r1 of the sequence (keys 0 ..< r1 visible to the block)
        var unit: Int       // index of the (sequence, kv head) pair whose dk / dv rows this task adds to
    }

    /// Tasks ordered by sequence, then key/value head, then query head of that group, then row block,
    /// so the tasks adding into one (sequence, kv head) slice of dk / dv are contiguous.
    static func trainingTasks(sequences: [Range<Int>], heads: Int, kvHeads: Int)
        -> (tasks: [TrainingTask], units: [(start: Int, count: Int, kvHead: Int, tasks: Range<Int>)], maxRows: Int) {
        let group = heads / kvHeads
        var tasks: [TrainingTask] = []
        var units: [(start: Int, count: Int, kvHead: Int, tasks: Range<Int>)] = []
        var maxRows = 0
        for s in sequences where !s.isEmpty {
            maxRows = max(maxRows, s.count)
            for g in 0..<kvHeads {
                let first = tasks.count
                for h in g * group..<(g + 1) * group {
                    var r = 0
                    while r < s.count {
                        tasks.append(TrainingTask(start: s.lowerBound, head: h, r0: r, r1: min(r + rowBlock, s.count),
                                                  unit: units.count))
                        r += rowBlock
                    }
                }
                units.append((s.lowerBound, s.count, g, first..<tasks.count))
            }
        }
        return (tasks, units, maxRows)
    }

    /// Splits tasks into `parts` contiguous ranges of about equal cost (query rows × visible keys).
    static func balancedSplit(_ tasks: [TrainingTask], parts: Int) -> [Range<Int>] {
        let cost = tasks.map { ($0.r1 - $0.r0) * $0.r1 + 1 }
        let total = cost.reduce(0, +)
        var bounds = [0], acc = 0, p = 1
        for (i, c) in cost.enumerated() {
            acc += c
            while p < parts && acc * parts >= total * p { bounds.append(i + 1); p += 1 }
        }
        while bounds.count < parts + 1 { bounds.append(tasks.count) }
        bounds[parts] = tasks.count
        return (0..<parts).map { bounds[$0]..<bounds[$0 + 1] }
    }

    /// Causal grouped-query attention of packed sequences, saving what backward needs:
    /// out [N, H, D] = softmax(q·kᵀ · scale + causal mask) · v within each sequence, and
    /// logsumexp [N, H] = log Σ_j e^(scale · q·k_j) over the keys each row sees.
    /// q [N, H, D], k [N, G, D], v [N, G, D]; query head h reads key/value head h / (H / G).
    /// `sequences`: the disjoint row ranges of the sequences (rows in none of them are left untouched).
    /// With a `window` w, row t of a sequence sees its rows t − w + 1 … t only.
    public static func trainingForward(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>,
                                       q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                       sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim d: Int,
                                       scale: Float, window: Int? = nil) {
        Profile.measure(.attention) {
            trainingForwardSequences(out: out, logsumexp: logsumexp, q: q, k: k, v: v, sequences: sequences,
                                     heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, window: window)
        }
    }

    static func trainingForwardSequences(out: UnsafeMutablePointer<Float>, logsumexp: UnsafeMutablePointer<Float>,
                                         q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                         sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim d: Int,
                                         scale: Float, window: Int?) {
        precondition(heads % kvHeads == 0, "query heads must be a multiple of key/value heads")
        let (tasks, _, maxRows) = trainingTasks(sequences: sequences, heads: heads, kvHeads: kvHeads)
        if tasks.isEmpty { return }
        let group = heads / kvHeads
        let qStride = heads * d, kvStride = kvHeads * d
        let parts = Parallel.threadCount
        let split = balancedSplit(tasks, parts: parts)
        let totalCost = tasks.reduce(0) { $0 + ($1.r1 - $1.r0) * $1.r1 } * d * 4
        tasks.withUnsafeBufferPointer { tasks in
            Parallel.forEachRange(parts, costPerItem: max(1, totalCost / parts)) { range in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * maxRows)   // [rows, keys]
                defer { scores.deallocate() }
                for part in range {
                    for t in split[part] {
                        let task = tasks[t]
                        let first = window.map { max(0, task.r0 + 1 - $0) } ?? 0   // keys first ..< r1 are seen
                        let rows = task.r1 - task.r0, keys = task.r1 - first
                        let g = task.head / group
                        let kh = k + (task.start + first) * kvStride + g * d, vh = v + (task.start + first) * kvStride + g * d
                        let row0 = task.start + task.r0
                        let qh = q + row0 * qStride + task.head * d
                        // scores [rows, keys] = scale · q_h · kᵀ
                        GEMM.f32Serial(m: rows, n: keys, k: d, a: qh, lda: qStride, b: kh, ldb: kvStride,
                                       bTransposed: true, c: scores, ldc: keys, alpha: scale, accumulate: false)
                        for i in 0..<rows {
                            let row = scores + i * keys
                            let (lo, hi) = visibleKeys(position: task.r0 + i, window: window, first: first)
                            for j in 0..<lo { row[j] = 0 }
                            logsumexp[(row0 + i) * heads + task.head] = finch_softmax_lse(row + lo, hi - lo)
                            for j in hi..<keys { row[j] = 0 }
                        }
                        // out_h [rows, D] = P · v
                        GEMM.f32Serial(m: rows, n: d, k: keys, a: scores, lda: keys, b: vh, ldb: kvStride,
                                       bTransposed: false, c: out + row0 * qStride + task.head * d, ldc: qStride,
                                       accumulate: false)
                    }
                }
            }
        }
    }

    /// Backward of `trainingForward`, accumulating into dq [N, H, D], dk [N, G, D] and dv [N, G, D].
    ///
    /// `dout` [N, H, D]; `out` [N, H, D] and `logsumexp` [N, H] as saved by `trainingForward`;
    /// q, k, v the forward's inputs. Per (sequence, head, block of query rows) it recomputes
    /// P = e^(scale·q·kᵀ − lse) (causal) and forms, with Δ_i = dout_i · out_i:
    /// `dv += Pᵀ·dout`, `dS = P ∘ (dout·vᵀ − Δ)`, `dq += scale · dS·k`, `dk += scale · dSᵀ·q`.
    /// dk / dv of a key/value head sum over the query heads of its group. Tasks are split into one
    /// contiguous, cost-balanced share per thread; a (sequence, kv head) slice of dk / dv that lies
    /// wholly in one share is added straight into dk / dv, and one split between shares gets a
    /// partial per share, summed after the parallel loop (no two threads add into the same rows).
    public static func trainingBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                        dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                        out: UnsafePointer<Float>, logsumexp: UnsafePointer<Float>,
                                        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                        sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim d: Int,
                                        scale: Float, window: Int? = nil) {
        Profile.measure(.attention) {
            trainingBackward(dq: dq, dk: dk, dv: dv, dout: dout, out: out, logsumexp: logsumexp, q: q, k: k, v: v,
                             sequences: sequences, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale,
                             window: window, parts: Parallel.threadCount)
        }
    }

    /// `trainingBackward` with its work cut into `parts` shares (tests use many to exercise the reduction).
    static func trainingBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                 dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                 out: UnsafePointer<Float>, logsumexp: UnsafePointer<Float>,
                                 q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                 sequences: [Range<Int>], heads: Int, kvHeads: Int, headDim d: Int,
                                 scale: Float, window: Int? = nil, parts: Int) {
        precondition(heads % kvHeads == 0, "query heads must be a multiple of key/value heads")
        let (tasks, units, maxRows) = trainingTasks(sequences: sequences, heads: heads, kvHeads: kvHeads)
        if tasks.isEmpty { return }
        let group = heads / kvHeads
        let qStride = heads * d, kvStride = kvHeads * d
        let split = balancedSplit(tasks, parts: parts)
        // Per share, two partial slots (its first and its last unit, the only ones it can share):
        // [parts, 2, maxRows, D] for dk and for dv, and the unit each slot holds (-1: none).
        let slotSize = maxRows * d
        let partialK = Buffer<Float>(count: parts * 2 * slotSize), partialV = Buffer<Float>(count: parts * 2 * slotSize)
        let slotUnit = Buffer<Int>(Array(repeating: -1, count: parts * 2))
        let totalCost = tasks.reduce(0) { $0 + ($1.r1 - $1.r0) * $1.r1 } * d * 10
        tasks.withUnsafeBufferPointer { tasks in
            Parallel.forEachRange(parts, costPerItem: max(1, totalCost / parts)) { range in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * maxRows)    // [rows, keys] P
                let ds = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * maxRows)   // [rows, keys] dP, then dS
                let delta = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)          // [rows] Δ
                defer { p.deallocate(); ds.deallocate(); delta.deallocate() }
                for part in range {
                    let share = split[part]
                    var unit = -1
                    var dkAcc = dk, dvAcc = dv, ldAcc = kvStride   // where this unit's dk / dv rows go
                    for t in share {
                        let task = tasks[t]
                        if task.unit != unit {
                            unit = task.unit
                            let u = units[unit]
                            if u.tasks.lowerBound >= share.lowerBound && u.tasks.upperBound <= share.upperBound {
                                dkAcc = dk + u.start * kvStride + u.kvHead * d
                                dvAcc = dv + u.start * kvStride + u.kvHead * d
                                ldAcc = kvStride
                            } else {
                                let slot = part * 2 + (t == share.lowerBound ? 0 : 1)
                                slotUnit[slot] = unit
                                dkAcc = partialK.pointer + slot * slotSize
                                dvAcc = partialV.pointer + slot * slotSize
                                ldAcc = d
                            }
                        }
                        let first = window.map { max(0, task.r0 + 1 - $0) } ?? 0   // keys first ..< r1 are seen
                        let rows = task.r1 - task.r0, keys = task.r1 - first
                        let g = task.head / group
                        let kh = k + (task.start + first) * kvStride + g * d, vh = v + (task.start + first) * kvStride + g * d
                        let dkRows = dkAcc + first * ldAcc, dvRows = dvAcc + first * ldAcc
                        let row0 = task.start + task.r0
                        let off = row0 * qStride + task.head * d
                        let qh = q + off, doh = dout + off
                        for i in 0..<rows { delta[i] = finch_dot_f32(doh + i * qStride, out + off + i * qStride, d) }
                        // P [rows, keys] = e^(scale · q_h · kᵀ − lse), zero above the diagonal
                        GEMM.f32Serial(m: rows, n: keys, k: d, a: qh, lda: qStride, b: kh, ldb: kvStride,
                                       bTransposed: true, c: p, ldc: keys, alpha: scale, accumulate: false)
                        for i in 0..<rows {
                            let row = p + i * keys
                            let (lo, hi) = visibleKeys(position: task.r0 + i, window: window, first: first)
                            for j in 0..<lo { row[j] = 0 }
                            finch_exp_shift(row + lo, row + lo, logsumexp[(row0 + i) * heads + task.head], 1, hi - lo, 0)
                            for j in hi..<keys { row[j] = 0 }
                        }
                        // dv [keys, D] += Pᵀ · dout_h
                        GEMM.f32Serial(m: keys, n: d, k: rows, a: p, lda: keys, aTransposed: true, b: doh, ldb: qStride,
                                       bTransposed: false, c: dvRows, ldc: ldAcc, accumulate: true)
                        // dP [rows, keys] = dout_h · vᵀ; dS = P ∘ (dP − Δ)
                        GEMM.f32Serial(m: rows, n: keys, k: d, a: doh, lda: qStride, b: vh, ldb: kvStride,
                                       bTransposed: true, c: ds, ldc: keys, accumulate: false)
                        for i in 0..<rows {
                            let pr = p + i * keys, dr = ds + i * keys, di = delta[i]
                            for j in 0..<keys { dr[j] = pr[j] * (dr[j] - di) }
                        }
                        // dq_h [rows, D] += scale · dS · k;  dk [keys, D] += scale · dSᵀ · q_h
                        GEMM.f32Serial(m: rows, n: d, k: keys, a: ds, lda: keys, b: kh, ldb: kvStride,
                                       bTransposed: false, c: dq + off, ldc: qStride, alpha: scale, accumulate: true)
                        GEMM.f32Serial(m: keys, n: d, k: rows, a: ds, lda: keys, aTransposed: true, b: qh, ldb: qStride,
                                       bTransposed: false, c: dkRows, ldc: ldAcc, alpha: scale, accumulate: true)
                    }
                }
            }
        }
        // Add the partials of the units that were split between shares.
        for slot in 0..<(parts * 2) where slotUnit[slot] >= 0 {
            let u = units[slotUnit[slot]]
            for r in 0..<u.count {
                let dst = (u.start + r) * kvStride + u.kvHead * d, src = slot * slotSize + r * d
                for e in 0..<d {
                    dk[dst + e] += partialK[src + e]
                    dv[dst + e] += partialV[src + e]
                }
            }
        }
    }
}
