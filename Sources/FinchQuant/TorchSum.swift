/// PyTorch's float32 sum on CPU (`at::native::cascade_sum`), reproduced operation for operation
/// so that statistics bitsandbytes takes with `Tensor.mean()` (the double-quantization offset)
/// round the same way. Layout: 8-lane vectors (PyTorch's AVX2 kernels, the ones its CPU build
/// dispatches to on the reference machines), 4 of them interleaved, summed in a 4-level
/// cascade; then the scalar tail and the lanes in order.
public enum TorchSum {
    static let lanes = 8

    /// `torch.tensor(values).sum()` for a contiguous float32 vector.
    public static func sum(_ x: UnsafeBufferPointer<Float>) -> Float {
        let n = x.count, v = lanes
        let vectors = n / v
        typealias Lane = SIMD8<Float>
        func vec(_ i: Int) -> Lane {
            var r = Lane()
            for l in 0..<v { r[l] = x[i * v + l] }
            return r
        }
        // row_sum: vectors viewed as [vectors / 4, 4], each column summed by multi_row_sum.
        let rows = vectors / 4
        var partial = multiRowSum(rows: rows) { i, k in vec(i * 4 + k) }
        for i in (rows * 4)..<vectors { partial[0] += vec(i) }
        for k in 1..<4 { partial[0] += partial[k] }
        var total: Float = 0
        for k in (vectors * v)..<n { total += x[k] }
        for l in 0..<v { total += partial[0][l] }
        return total
    }

    /// `torch.tensor(values).mean()`: the sum divided by the count in float32.
    public static func mean(_ x: UnsafeBufferPointer<Float>) -> Float {
        sum(x) / Float(x.count)
    }

    /// PyTorch's `multi_row_sum` for 4 interleaved rows: level 0 adds `2^p` items, then each
    /// level flushes into the next whenever its count wraps.
    private static func multiRowSum(rows size: Int, _ load: (Int, Int) -> SIMD8<Float>) -> [SIMD8<Float>] {
        let levels = 4
        let power = max(4, ceilLog2(size) / levels)
        let step = 1 << power, mask = step - 1
        var acc = [[SIMD8<Float>]](repeating: [SIMD8<Float>](repeating: .zero, count: 4), count: levels)
        var i = 0
        while i + step <= size {
            for _ in 0..<step {
                for k in 0..<4 { acc[0][k] += load(i, k) }
                i += 1
            }
            for j in 1..<levels {
                for k in 0..<4 { acc[j][k] += acc[j - 1][k]; acc[j - 1][k] = .zero }
                if i & (mask << (j * power)) != 0 { break }
            }
        }
        while i < size {
            for k in 0..<4 { acc[0][k] += load(i, k) }
            i += 1
        }
        for j in 1..<levels { for k in 0..<4 { acc[0][k] += acc[j][k] } }
        return acc[0]
    }

    /// c10's `CeilLog2`: 0 for 0 and 1, else the bit length of x − 1.
    private static func ceilLog2(_ x: Int) -> Int {
        x <= 1 ? 0 : (Int.bitWidth - (x - 1).leadingZeroBitCount)
    }
}
