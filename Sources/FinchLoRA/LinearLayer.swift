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
}

extension LinearWeight: LinearLayer {}
