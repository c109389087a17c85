import Foundation

// Dimension letters: N values.

/// The pointwise activations of feed-forward layers without a fused gated kernel here (T5's
/// `wi → act → wo`, and gated ones other than SwiGLU / GeGLU), with their derivatives.
public enum Activation: Sendable, Equatable {
    case relu
    case silu
    case gelu(GELU.Approximation)

    /// y [N] = act(x [N]). y may be x.
    public static func forward(_ a: Activation, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int) {
        switch a {
        case .gelu(let approx): GELU.forward(y: y, x: x, count: count, approximation: approx)
        case .relu:
            Parallel.forEachRange(count, costPerItem: 1) { r in for i in r { y[i] = max(x[i], 0) } }
        case .silu:
            Parallel.forEachRange(count, costPerItem: 8) { r in for i in r { y[i] = x[i] / (1 + expf(-x[i])) } }
        }
    }

    /// dx [N] += dy [N] · act′(x [N]) (ReLU's derivative at 0 is 0, as PyTorch's).
    public static func backward(_ a: Activation, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, count: Int) {
        switch a {
        case .gelu(let approx): GELU.backward(dx: dx, dy: dy, x: x, count: count, approximation: approx)
        case .relu:
            Parallel.forEachRange(count, costPerItem: 1) { r in for i in r where x[i] > 0 { dx[i] += dy[i] } }
        case .silu:
            Parallel.forEachRange(count, costPerItem: 8) { r in
                for i in r {
                    let s = 1 / (1 + expf(-x[i]))
                    dx[i] += dy[i] * s * (1 + x[i] * (1 - s))
                }
            }
        }
    }
}
