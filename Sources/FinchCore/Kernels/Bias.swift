// Dimension letters: N rows, O output features.

/// The bias of a linear layer: `y += b` on every row.
public enum Bias {
    /// y [N, O] += bias [O] on every row.
    public static func forward(y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, features o: Int) {
        Parallel.forEachRange(rows, costPerItem: o) { range in
            for r in range {
                let yr = y + r * o
                for i in 0..<o { yr[i] += bias[i] }
            }
        }
    }

    /// Backward of `forward`, accumulating: dbias [O] += Σ_rows dy [N, O]. (∂y/∂x passes dy through
    /// unchanged, so a frozen bias needs no backward at all.)
    public static func backward(dbias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, features o: Int) {
        for r in 0..<rows {
            let dr = dy + r * o
            for i in 0..<o { dbias[i] += dr[i] }
        }
    }
}
