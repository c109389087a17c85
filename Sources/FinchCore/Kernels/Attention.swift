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
    /// Query head h reads key/value head h / (H / G).
    public static func forward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                               segments: [AttentionSegment], heads: Int, kvHeads: Int, headDim d: Int,
                               scale: Float) {
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
                    let keysUsed = s.pastLength + task.r1        // causal: the block's last row sees this many
                    let g = task.head / group
                    let k = s.keys + g * s.capacity * d
                    let v = s.values + g * s.capacity * d
                    let qh = q + (s.rowStart + task.r0) * rowStride + task.head * d
                    let oh = out + (s.rowStart + task.r0) * rowStride + task.head * d
                    // scores [rows, keysUsed] = scale · q_h · kᵀ
                    GEMM.f32Serial(m: rows, n: keysUsed, k: d, a: qh, lda: rowStride, b: k, ldb: d,
                                   bTransposed: true, c: scores, ldc: keysUsed, alpha: scale, accumulate: false)
                    for i in 0..<rows {
                        let row = scores + i * keysUsed
                        let visible = s.pastLength + task.r0 + i + 1
                        softmaxInPlace(row, count: visible)
                        for j in visible..<keysUsed { row[j] = 0 }
                    }
                    // out_h [rows, D] = scores · v
                    GEMM.f32Serial(m: rows, n: d, k: keysUsed, a: scores, lda: keysUsed, b: v, ldb: d,
                                   bTransposed: false, c: oh, ldc: rowStride, accumulate: false)
                }
            }
        }
    }

    /// Numerically stable softmax of `count` values in place.
    @inline(__always)
    public static func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        finch_softmax(x, n)
    }
}
