import FinchCore

/// Anything a model calls as a linear layer: a frozen weight, or a weight wrapped with adapters.
/// Models hold `any LinearLayer`, so LoRA is added by swapping the layer, not by editing the model.
public protocol LinearLayer: AnyObject, Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// Whether a call over `rows` rows wants x as bf16 (so callers can share one conversion).
    func wantsBF16Input(rows: Int) -> Bool
    /// y[M, out] (+)= layer(x[M, in]).
    func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                 rows: Int, accumulate: Bool, scratch: Scratch)
    /// Backward of `forward`: dx[M, in] (+)= ∂y/∂x · dy (`accumulate: false` overwrites), and the
    /// gradients of whatever trains in the layer added to its gradient buffers. `x` is the
    /// forward's input; dy [M, out]. Frozen weights get no gradient.
    func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                  rows: Int, accumulate: Bool, scratch: Scratch)
}

extension LinearWeight: LinearLayer {
    public func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         rows: Int, accumulate: Bool, scratch: Scratch) {
        backwardInput(dx: dx, dy: dy, rows: rows, accumulate: accumulate, scratch: scratch)
    }
}
