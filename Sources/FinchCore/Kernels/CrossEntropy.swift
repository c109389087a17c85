import CFinchKernels

// Dimension letters: N rows (tokens), V vocabulary, C channels (the LM head's input features).

/// Token-level cross-entropy of a causal language model, as Hugging Face computes it.
///
/// Row t of the logits predicts the label of token t + 1 of the same sequence (`shiftedTargets`
/// builds the per-row targets from per-token labels); targets equal to -100 are ignored, and the
/// loss is the mean over the counted rows: `sum / count` from `forward`, whose gradient is
/// `backward` with `scale = 1 / count` (with gradient accumulation over micro-batches, pass
/// 1 / (the count of all of them)). Statistics in f32 per row, sums in f64.
///
/// Memory: logits [N, V] in f32 are large (1024 rows × 49152 × 4 B = 200 MB). `linearForwardBackward`
/// runs the LM head, the loss and its backward over chunks of rows, so only [chunk, V] logits exist
/// at a time, and skips rows whose target is ignored (a masked prompt costs nothing).
public enum CrossEntropy {
    /// The target value of rows that do not count (PyTorch's `ignore_index`).
    public static let ignoreIndex: Int32 = -100

    /// log Σ e^x of one row of logits (max-subtracted, vectorized): the loss of token t is this minus its logit.
    public static func logSumExp(_ row: UnsafeBufferPointer<Float>) -> Float {
        finch_logsumexp(row.baseAddress!, row.count)
    }

    /// Per-row targets [N] from per-token labels [N] (usually the input ids, with -100 on the
    /// prompt): row t of a sequence gets the label of row t + 1, and each sequence's last row gets
    /// -100 (transformers' `ForCausalLMLoss`: pad the labels with -100, shift left by one).
    /// `sequences`: the disjoint row ranges of the sequences; rows outside them get -100.
    public static func shiftedTargets(labels: [Int32], sequences: [Range<Int>]) -> [Int32] {
        var targets = [Int32](repeating: ignoreIndex, count: labels.count)
        for s in sequences where s.count > 1 {
            for t in s.lowerBound..<(s.upperBound - 1) { targets[t] = labels[t + 1] }
        }
        return targets
    }

    /// Rows whose target counts (is not -100).
    public static func countTargets(_ targets: UnsafePointer<Int32>, rows: Int) -> Int {
        var n = 0
        for r in 0..<rows where targets[r] != ignoreIndex { n += 1 }
        return n
    }

    /// Throws unless every target is -100 or a token id in 0 ..< vocab.
    public static func validate(targets: UnsafePointer<Int32>, rows: Int, vocab: Int) throws(CoreError) {
        for r in 0..<rows {
            let t = targets[r]
            if t != ignoreIndex && (t < 0 || Int(t) >= vocab) {
                throw .invalidTarget(row: r, target: Int(t), vocab: vocab)
            }
        }
    }

    /// Loss of every row: losses [N] (optional) = logsumexp(logits_r) − logits_r[target_r], 0 where
    /// the target is -100; logsumexp [N] (optional, saved for `backward`) = log Σ_v e^logits_r[v]
    /// (left unwritten on ignored rows). logits [N, V], targets [N].
    /// Returns the sum of the counted rows' losses and their count (the mean loss is sum / count).
    @discardableResult
    public static func forward(losses: UnsafeMutablePointer<Float>?, logsumexp: UnsafeMutablePointer<Float>?,
                               logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                               rows: Int, vocab: Int) throws(CoreError) -> (sum: Double, count: Int) {
        try validate(targets: targets, rows: rows, vocab: vocab)
        let own = losses == nil ? Buffer<Float>(count: rows) : nil
        let out = losses ?? own!.pointer
        Parallel.forEachRange(rows, costPerItem: vocab * 3) { range in
            for r in range {
                let t = targets[r]
                if t == ignoreIndex { out[r] = 0; continue }
                let row = logits + r * vocab
                let lse = finch_logsumexp(row, vocab)
                logsumexp?[r] = lse
                out[r] = lse - row[Int(t)]
            }
        }
        var sum = 0.0, count = 0
        for r in 0..<rows where targets[r] != ignoreIndex { sum += Double(out[r]); count += 1 }
        return (sum, count)
    }

    /// Backward of `forward`: dlogits [N, V] += (softmax(logits_r) − onehot(target_r)) · scale on
    /// counted rows; ignored rows get nothing. `logsumexp` [N] is the forward's (recomputed when nil).
    ///
    /// In place: `dlogits` may be the `logits` buffer itself; then the logits are REPLACED by their
    /// gradient (not added to), and ignored rows are set to zero. Each row's softmax sums to one, so
    /// a counted row of the gradient sums to zero. Targets outside 0 ..< V are treated as ignored
    /// (`forward` rejects them).
    public static func backward(dlogits: UnsafeMutablePointer<Float>, logsumexp: UnsafePointer<Float>?,
                                logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                                rows: Int, vocab: Int, scale: Float) {
        let inPlace = UnsafePointer(dlogits) == logits
        Parallel.forEachRange(rows, costPerItem: vocab * 3) { range in
            for r in range {
                let t = Int(targets[r])
                let row = logits + r * vocab, drow = dlogits + r * vocab
                guard t >= 0 && t < vocab else {
                    if inPlace { drow.update(repeating: 0, count: vocab) }
                    continue
                }
                let lse = logsumexp?[r] ?? finch_logsumexp(row, vocab)
                finch_exp_shift(drow, row, lse, scale, vocab, inPlace ? 0 : 1)
                drow[t] -= scale
            }
        }
    }

    /// Runs `body` over chunks of up to `chunkRows` counted rows (target not -100) with the
    /// chunk's logits = x·Wᵀ computed: body(logits [m, V], the chunk's inputs [m, C], targets [m],
    /// the chunk's rows, m).
    /// Only [chunk, V] logits exist at a time.
    private static func forEachCountedChunk(x: UnsafePointer<Float>, head: LinearWeight,
                                            targets: UnsafePointer<Int32>, rows: Int, chunkRows: Int,
                                            scratch: Scratch,
                                            _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Int32>, ArraySlice<Int>, Int) throws(CoreError) -> Void)
                                            throws(CoreError) -> Int {
        let v = head.outFeatures, c = head.inFeatures
        try validate(targets: targets, rows: rows, vocab: v)
        let counted = (0..<rows).filter { targets[$0] != ignoreIndex }
        if counted.isEmpty { return 0 }
        let chunk = max(1, min(chunkRows, counted.count))
        let xc = Buffer<Float>(count: chunk * c)        // [chunk, C] gathered inputs
        let logits = Buffer<Float>(count: chunk * v)    // [chunk, V]
        let tc = Buffer<Int32>(count: chunk)             // [chunk] targets
        var first = 0
        while first < counted.count {
            let picked = counted[first..<min(first + chunk, counted.count)]
            let m = picked.count
            for (i, r) in picked.enumerated() {
                (xc.pointer + i * c).update(from: x + r * c, count: c)
                tc[i] = targets[r]
            }
            head.forward(y: logits.pointer, x: xc.pointer, rows: m, scratch: scratch)
            try body(logits.pointer, UnsafePointer(xc.pointer), UnsafePointer(tc.pointer), picked, m)
            first += m
        }
        return counted.count
    }

    /// The LM head and the loss over chunks of rows, without a gradient (evaluation): the loss
    /// sum and count of the counted rows, as `forward` returns them, never holding [N, V] logits.
    /// x [N, C] the head's input (after the final norm); `head` W [V, C]; targets [N]; losses [N]
    /// (optional): every row's loss, 0 where the target is -100 (per-sequence log-probabilities).
    public static func linearForward(x: UnsafePointer<Float>, head: LinearWeight, targets: UnsafePointer<Int32>,
                                     rows: Int, losses: UnsafeMutablePointer<Float>? = nil, chunkRows: Int = 256,
                                     scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        let v = head.outFeatures
        losses?.update(repeating: 0, count: rows)
        let lc = losses.map { _ in Buffer<Float>(count: max(1, min(chunkRows, rows))) }   // [chunk] a chunk's losses
        var sum = 0.0
        let count = try forEachCountedChunk(x: x, head: head, targets: targets, rows: rows, chunkRows: chunkRows,
                                            scratch: scratch) { (logits, _, tc, picked, m) throws(CoreError) in
            sum += try forward(losses: lc?.pointer, logsumexp: nil, logits: logits, targets: tc, rows: m, vocab: v).sum
            if let losses, let lc { for (i, r) in picked.enumerated() { losses[r] = lc[i] } }
        }
        return (sum, count)
    }

    /// The LM head, the loss and their backward over chunks of rows, so that all [N, V] logits
    /// never exist at once: for each chunk of up to `chunkRows` counted rows, logits = x·Wᵀ,
    /// the loss, dlogits (in place) and dx += dlogits · W. Rows whose target is -100 are skipped.
    ///
    /// dx [N, C] += ∂(scale · Σ losses)/∂x; x [N, C] the head's input (after the final norm);
    /// `head` W [V, C] frozen (for tied embeddings, the embedding matrix); targets [N].
    /// Returns the loss sum and count of the counted rows, as `forward` does; losses [N] (optional):
    /// every row's loss, 0 where the target is -100.
    @discardableResult
    public static func linearForwardBackward(dx: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                                             head: LinearWeight, targets: UnsafePointer<Int32>, rows: Int,
                                             scale: Float, losses: UnsafeMutablePointer<Float>? = nil,
                                             headGrad: UnsafeMutablePointer<Float>? = nil, chunkRows: Int = 256,
                                             scratch: Scratch) throws(CoreError) -> (sum: Double, count: Int) {
        let v = head.outFeatures, c = head.inFeatures
        let dxc = Buffer<Float>(count: max(1, min(chunkRows, rows)) * c)   // [chunk, C] the gradient of a chunk's inputs
        losses?.update(repeating: 0, count: rows)
        let lc = losses.map { _ in Buffer<Float>(count: max(1, min(chunkRows, rows))) }   // [chunk] a chunk's losses
        var sum = 0.0
        let count = try forEachCountedChunk(x: x, head: head, targets: targets, rows: rows, chunkRows: chunkRows,
                                            scratch: scratch) { (logits, xc, tc, picked, m) throws(CoreError) in
            sum += try forward(losses: lc?.pointer, logsumexp: nil, logits: logits, targets: tc, rows: m, vocab: v).sum
            if let losses, let lc { for (i, r) in picked.enumerated() { losses[r] = lc[i] } }
            backward(dlogits: logits, logsumexp: nil, logits: logits, targets: tc, rows: m, vocab: v, scale: scale)
            head.backwardInput(dx: dxc.pointer, dy: logits, rows: m, accumulate: false, scratch: scratch)
            if let headGrad {   // headGrad [V, C] += dlogitsᵀ [V, m] · xc [m, C]
                GEMM.f32(m: v, n: c, k: m, a: logits, lda: v, aTransposed: true, b: xc, ldb: c, bTransposed: false,
                         c: headGrad, ldc: c, accumulate: true)
            }
            for (i, r) in picked.enumerated() {
                let d = dx + r * c, s = dxc.pointer + i * c
                for e in 0..<c { d[e] += s[e] }
            }
        }
        return (sum, count)
    }
}
