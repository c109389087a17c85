import FinchCore
import FinchLoRA
import Foundation

// Dimension letters: N rows of the call, M encoder rows, C d_model, I inner width (H · D),
// F d_ff, H heads, D d_kv.

/// What one block's forward keeps for its backward: its input, each sublayer's normed input
/// and norm statistics, the attention inputs and outputs, the FFN's pre-activations.
final class T5BlockActs {
    let rows: Int
    /// [N, C] the block's input (kept under gradient checkpointing, the rest recomputed).
    let x: Buffer<Float>
    var h1, rstd1, q, k, v, att, lse: Buffer<Float>?
    /// [N, C] the input of cross-attention (decoder) and of the FFN.
    var x1, x2: Buffer<Float>?
    var hc, rstdc, cq, ck, cv, catt, clse: Buffer<Float>?
    var h2, rstd2, g, u, a: Buffer<Float>?

    init(rows: Int, x: Buffer<Float>) { self.rows = rows; self.x = x }
}

/// Self-attention of one sequence in a block call: its rows, the bias of its (query, key)
/// positions, and in cached generation the cache its keys and values are appended to.
struct T5SelfSegment {
    let rows: Range<Int>
    /// [H, Q, K]
    let bias: Buffer<Float>
    /// Keys and values of the sequence's earlier tokens, per layer, and how many there are.
    let cache: EncoderDecoderCache?
}

/// The keys of cross-attention: computed from the encoder output in the call (training), or read
/// from each sequence's cache (generation).
enum T5CrossKeys {
    /// encoder output [M, C] and each sequence's rows of it.
    case compute(encoderOutput: UnsafePointer<Float>, rows: Int, ranges: [Range<Int>])
    case cached([EncoderDecoderCache])
}

extension T5Model {
    /// One block over `n` rows: x [N, C] becomes the block's output in place. With `acts`, what
    /// backward needs is kept there. `li` indexes the layer in its stack (for caches). `context`
    /// goes to every linear of the block.
    func blockForward(_ block: T5Block, layer li: Int, x: UnsafeMutablePointer<Float>, rows n: Int,
                      selfSegments: [T5SelfSegment], causal: Bool, cross: T5CrossKeys?, acts: T5BlockActs?,
                      context: PassContext) {
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads, d = config.dKv
        func buffer(_ count: Int) -> Buffer<Float> { Buffer<Float>(uninitializedCount: max(1, count)) }
        func project(_ l: T5Linear, _ input: UnsafePointer<Float>, rows: Int, width: Int) -> Buffer<Float> {
            let y = buffer(rows * width)
            block[l].forward(y: y.pointer, x: input, xBF16: nil, rows: rows, accumulate: false, scratch: scratch, context: context)
            return y
        }

        // Self-attention.
        let h1 = buffer(n * c), rstd1 = buffer(n)
        norm(h1.pointer, rstd: rstd1.pointer, x, block.selfNorm, rows: n)
        let q = project(.q, h1.pointer, rows: n, width: inner)
        let k = project(.k, h1.pointer, rows: n, width: inner)
        let v = project(.v, h1.pointer, rows: n, width: inner)
        let att = buffer(n * inner), lse = buffer(n * h)
        for s in selfSegments {
            let r = s.rows
            var kp = UnsafePointer(k.pointer + r.lowerBound * inner), vp = UnsafePointer(v.pointer + r.lowerBound * inner)
            var keys = r.count, past = 0
            if let cache = s.cache {
                past = cache.length
                cache.append(layer: li, k: kp, v: vp, rows: r.count)
                kp = UnsafePointer(cache.selfK[li].pointer); vp = UnsafePointer(cache.selfV[li].pointer)
                keys = past + r.count
            }
            backend.biasedAttentionForward(out: att.pointer + r.lowerBound * inner, logsumexp: lse.pointer + r.lowerBound * h,
                                    q: q.pointer + r.lowerBound * inner, k: kp, v: vp, bias: s.bias.pointer,
                                    shape: .init(queries: r.count, keys: keys, heads: h, headDim: d,
                                                 causalOffset: causal ? past : nil))
        }
        block[.o].forward(y: x, x: att.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
        if let acts { acts.h1 = h1; acts.rstd1 = rstd1; acts.q = q; acts.k = k; acts.v = v; acts.att = att; acts.lse = lse }

        // Cross-attention (decoder blocks).
        if let cross, let crossNorm = block.crossNorm {
            if let acts { acts.x1 = Buffer(copying: x, count: n * c) }
            let hc = buffer(n * c), rstdc = buffer(n)
            norm(hc.pointer, rstd: rstdc.pointer, x, crossNorm, rows: n)
            let cq = project(.crossQ, hc.pointer, rows: n, width: inner)
            let catt = buffer(n * inner), clse = buffer(n * h)
            switch cross {
            case let .compute(enc, m, ranges):
                let ck = project(.crossK, enc, rows: m, width: inner)
                let cv = project(.crossV, enc, rows: m, width: inner)
                for (s, keys) in zip(selfSegments, ranges) {
                    let r = s.rows
                    backend.biasedAttentionForward(out: catt.pointer + r.lowerBound * inner, logsumexp: clse.pointer + r.lowerBound * h,
                                            q: cq.pointer + r.lowerBound * inner, k: ck.pointer + keys.lowerBound * inner,
                                            v: cv.pointer + keys.lowerBound * inner, bias: nil,
                                            shape: .init(queries: r.count, keys: keys.count, heads: h, headDim: d))
                }
                if let acts { acts.ck = ck; acts.cv = cv }
            case .cached(let caches):
                for (s, cache) in zip(selfSegments, caches) {
                    let r = s.rows
                    backend.biasedAttentionForward(out: catt.pointer + r.lowerBound * inner, logsumexp: nil,
                                            q: cq.pointer + r.lowerBound * inner, k: cache.crossK[li].pointer,
                                            v: cache.crossV[li].pointer, bias: nil,
                                            shape: .init(queries: r.count, keys: cache.encoderRows, heads: h, headDim: d))
                }
            }
            block[.crossO].forward(y: x, x: catt.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
            if let acts { acts.hc = hc; acts.rstdc = rstdc; acts.cq = cq; acts.catt = catt; acts.clse = clse }
        }

        // Feed-forward.
        if let acts { acts.x2 = Buffer(copying: x, count: n * c) }
        let h2 = buffer(n * c), rstd2 = buffer(n)
        norm(h2.pointer, rstd: rstd2.pointer, x, block.ffnNorm, rows: n)
        let g = project(config.isGated ? .wi0 : .wi, h2.pointer, rows: n, width: f)
        let u = config.isGated ? project(.wi1, h2.pointer, rows: n, width: f) : nil
        let a = buffer(n * f)
        T5FeedForward.activate(a.pointer, g.pointer, up: u?.pointer, count: n * f, activation: activation, backend: backend)
        block[.wo].forward(y: x, x: a.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
        if let acts { acts.h2 = h2; acts.rstd2 = rstd2; acts.g = g; acts.u = u; acts.a = a }
    }

    /// Backward of `blockForward` over the rows `acts` kept: `dx` [N, C] holds ∂loss/∂(block
    /// output) and becomes ∂loss/∂(block input); the adapters' gradients are added; for decoder
    /// blocks `dEncoder` [M, C] accumulates ∂loss/∂(encoder output) through cross-attention's
    /// keys and values. `context` is the forward's.
    func blockBackward(_ block: T5Block, acts: T5BlockActs, dx: UnsafeMutablePointer<Float>,
                       selfSegments: [T5SelfSegment], causal: Bool,
                       cross: (encoderOutput: UnsafePointer<Float>, rows: Int, ranges: [Range<Int>], dEncoder: UnsafeMutablePointer<Float>)?,
                       context: PassContext) {
        let n = acts.rows
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads, d = config.dKv
        func buffer(_ count: Int) -> Buffer<Float> { Buffer<Float>(count: max(1, count)) }

        // Feed-forward: x_out = x2 + wo(act(...)).
        let da = buffer(n * f)
        block[.wo].backward(dx: da.pointer, dy: dx, x: acts.a!.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        let dg = buffer(n * f), du = config.isGated ? buffer(n * f) : nil
        T5FeedForward.activateBackward(dg: dg.pointer, du: du?.pointer, da: da.pointer, g: acts.g!.pointer, up: acts.u?.pointer,
                                       count: n * f, activation: activation, backend: backend)
        let dh = buffer(n * c)
        block[config.isGated ? .wi0 : .wi].backward(dx: dh.pointer, dy: dg.pointer, x: acts.h2!.pointer, rows: n,
                                                     accumulate: false, scratch: scratch, context: context)
        if let du { block[.wi1].backward(dx: dh.pointer, dy: du.pointer, x: acts.h2!.pointer, rows: n, accumulate: true, scratch: scratch, context: context) }
        backend.rmsNormBackward(dx: dx, dweight: nil, dout: dh.pointer, x: acts.x2!.pointer, weight: block.ffnNorm.pointer,
                         rstd: acts.rstd2!.pointer, rows: n, channels: c)

        // Cross-attention: x2 = x1 + o(attention(q(norm(x1)), k(enc), v(enc))).
        if let cross, let crossNorm = block.crossNorm {
            let datt = buffer(n * inner)
            block[.crossO].backward(dx: datt.pointer, dy: dx, x: acts.catt!.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            let dq = buffer(n * inner), dk = buffer(cross.rows * inner), dv = buffer(cross.rows * inner)
            for (s, keys) in zip(selfSegments, cross.ranges) {
                let r = s.rows
                backend.biasedAttentionBackward(dq: dq.pointer + r.lowerBound * inner, dk: dk.pointer + keys.lowerBound * inner,
                                         dv: dv.pointer + keys.lowerBound * inner, dout: datt.pointer + r.lowerBound * inner,
                                         out: acts.catt!.pointer + r.lowerBound * inner, logsumexp: acts.clse!.pointer + r.lowerBound * h,
                                         q: acts.cq!.pointer + r.lowerBound * inner, k: acts.ck!.pointer + keys.lowerBound * inner,
                                         v: acts.cv!.pointer + keys.lowerBound * inner, bias: nil,
                                         shape: .init(queries: r.count, keys: keys.count, heads: h, headDim: d))
            }
            let dhc = buffer(n * c)
            block[.crossQ].backward(dx: dhc.pointer, dy: dq.pointer, x: acts.hc!.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            block[.crossK].backward(dx: cross.dEncoder, dy: dk.pointer, x: cross.encoderOutput, rows: cross.rows, accumulate: true, scratch: scratch, context: context)
            block[.crossV].backward(dx: cross.dEncoder, dy: dv.pointer, x: cross.encoderOutput, rows: cross.rows, accumulate: true, scratch: scratch, context: context)
            backend.rmsNormBackward(dx: dx, dweight: nil, dout: dhc.pointer, x: acts.x1!.pointer, weight: crossNorm.pointer,
                             rstd: acts.rstdc!.pointer, rows: n, channels: c)
        }

        // Self-attention: x1 = x + o(attention(q, k, v of norm(x)) + bias).
        let datt = buffer(n * inner)
        block[.o].backward(dx: datt.pointer, dy: dx, x: acts.att!.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        let dq = buffer(n * inner), dk = buffer(n * inner), dv = buffer(n * inner)
        for s in selfSegments {
            let r = s.rows, o = r.lowerBound * inner
            backend.biasedAttentionBackward(dq: dq.pointer + o, dk: dk.pointer + o, dv: dv.pointer + o, dout: datt.pointer + o,
                                     out: acts.att!.pointer + o, logsumexp: acts.lse!.pointer + r.lowerBound * h,
                                     q: acts.q!.pointer + o, k: acts.k!.pointer + o, v: acts.v!.pointer + o, bias: s.bias.pointer,
                                     shape: .init(queries: r.count, keys: r.count, heads: h, headDim: d, causalOffset: causal ? 0 : nil))
        }
        let dh1 = buffer(n * c)
        block[.q].backward(dx: dh1.pointer, dy: dq.pointer, x: acts.h1!.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        block[.k].backward(dx: dh1.pointer, dy: dk.pointer, x: acts.h1!.pointer, rows: n, accumulate: true, scratch: scratch, context: context)
        block[.v].backward(dx: dh1.pointer, dy: dv.pointer, x: acts.h1!.pointer, rows: n, accumulate: true, scratch: scratch, context: context)
        backend.rmsNormBackward(dx: dx, dweight: nil, dout: dh1.pointer, x: acts.x.pointer, weight: block.selfNorm.pointer,
                         rstd: acts.rstd1!.pointer, rows: n, channels: c)
    }
}

/// T5's FFN activations, plain (`act(g)`) or gated (`act(g) · up`), with their backward.
enum T5FeedForward {
    /// a [count] = act(g) (· up when gated).
    static func activate(_ a: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, up: UnsafePointer<Float>?,
                         count: Int, activation: T5Activation, backend: any ComputeBackend) {
        switch activation {
        case .relu: for i in 0..<count { a[i] = max(g[i], 0) }
        case .gelu(let approx): backend.geluForward(y: a, x: g, count: count, approximation: approx)
        case .silu: for i in 0..<count { a[i] = g[i] / (1 + expf(-g[i])) }
        }
        if let up { for i in 0..<count { a[i] *= up[i] } }
    }

    /// dg (= ∂/∂g) and, when gated, du (= ∂/∂up), overwritten, from da = ∂loss/∂a.
    static func activateBackward(dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>?, da: UnsafePointer<Float>,
                                 g: UnsafePointer<Float>, up: UnsafePointer<Float>?, count: Int, activation: T5Activation,
                                 backend: any ComputeBackend) {
        // The gradient reaching act(g): da · up when gated.
        let dact = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
        defer { dact.deallocate() }
        if let up, let du {
            let act = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
            defer { act.deallocate() }
            activate(act, g, up: nil, count: count, activation: activation, backend: backend)
            for i in 0..<count { du[i] = da[i] * act[i]; dact[i] = da[i] * up[i] }
        } else {
            dact.update(from: da, count: count)
        }
        switch activation {
        case .relu: for i in 0..<count { dg[i] = g[i] > 0 ? dact[i] : 0 }
        case .gelu(let approx):
            dg.update(repeating: 0, count: count)
            backend.geluBackward(dx: dg, dy: dact, x: g, count: count, approximation: approx)
        case .silu:
            for i in 0..<count {
                let s = 1 / (1 + expf(-g[i]))
                dg[i] = dact[i] * s * (1 + g[i] * (1 - s))
            }
        }
    }
}
