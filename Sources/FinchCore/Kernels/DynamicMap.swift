import Foundation

/// bitsandbytes' 8-bit dynamic quantization maps (`create_dynamic_map`): 256 float32 values in
/// [-1, 1] (signed) or [0, 1] (unsigned), ascending, dense near zero: each decade 10⁻⁶ … 10⁰
/// gets twice the codes of the one below it. Used for double quantization of 4-bit scales and
/// for 8-bit optimizer states.
public enum DynamicMap {
    /// The signed map (the default `code` of `quantize_blockwise`).
    public static let signed: [Float] = make(signed: true)
    /// The unsigned map (8-bit optimizers' second moment).
    public static let unsigned: [Float] = make(signed: false)

    /// `create_dynamic_map(signed, max_exponent_bits: 7, total_bits: 8)`, in float32 as PyTorch computes it.
    static func make(signed: Bool, maxExponentBits: Int = 7, totalBits: Int = 8) -> [Float] {
        var data: [Float] = []
        let nonSignBits = totalBits - 1
        let additional = (1 << (nonSignBits - maxExponentBits)) - 1
        func add(decade i: Int, items: Int) {
            let b = linspace(0.1, 1, items)
            let scale = Float(pow(10.0, Double(-(maxExponentBits - 1) + i)))
            let means = (0..<(items - 1)).map { (b[$0] + b[$0 + 1]) / 2 }
            data += means.map { scale * $0 }
            if signed { data += means.map { -scale * $0 } }
        }
        for i in 0..<maxExponentBits {
            let items = signed ? (1 << (i + nonSignBits - maxExponentBits)) + 1
                               : (1 << (i + nonSignBits - maxExponentBits + 1)) + 1
            add(decade: i, items: items)
        }
        if additional > 0 { add(decade: maxExponentBits - 1, items: additional + 1) }
        data.append(0)
        data.append(1)
        precondition(data.count == 1 << totalBits)
        return data.sorted()
    }

    /// `torch.linspace(start, end, steps, dtype=float32)` on CPU: the first half counts up
    /// from `start`, the second half down from `end`, with a float32 step, each point one
    /// fused multiply-add (PyTorch's vectorized kernel).
    static func linspace(_ start: Float, _ end: Float, _ steps: Int) -> [Float] {
        if steps == 1 { return [start] }
        let step = (end - start) / Float(steps - 1)
        let half = steps / 2
        return (0..<steps).map { i in
            i < half ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(steps - i - 1))
        }
    }
}
