/// The 4-bit data types of bitsandbytes (`quant_type`), each a table of 16 values in [-1, 1]
/// indexed by the stored nibble.
public enum FourBitType: String, Sendable, CaseIterable, Codable {
    /// NormalFloat4: quantiles of N(0, 1) (QLoRA), ascending.
    case nf4
    /// A 4-bit float (1 sign, 2 exponent, 1 mantissa bits, bias 2) scaled to [-1, 1], in bit-pattern order.
    case fp4

    /// Value of each nibble, as `bitsandbytes.functional.get_4bit_type` makes it (float32).
    public var code: [Float] {
        switch self {
        case .nf4:
            return [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
        case .fp4:
            // Bit patterns 0b000…0b111 of the magnitude, then the same negated; divided by the largest (12) in float32.
            // Nibble 8 is +0.0: bitsandbytes' list says `-0`, which Python reads as the integer 0.
            let raw: [Float] = [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3]
            return raw.map { $0 / 12 }
        }
    }

    /// Nibbles in ascending order of value (stable: equal values by nibble), and the midpoints between
    /// neighbours: quantizing picks the first bucket whose upper midpoint is ≥ the value
    /// (`torch.bucketize`, so an exact tie goes to the lower value), as bitsandbytes' CPU path does.
    var buckets: (order: [UInt8], bounds: [Float]) {
        let c = code
        let order = (0..<16).sorted { c[$0] < c[$1] || (c[$0] == c[$1] && $0 < $1) }
        let bounds = (0..<15).map { (c[order[$0]] + c[order[$0 + 1]]) / 2 }
        return (order.map(UInt8.init), bounds)
    }
}
