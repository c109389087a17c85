import FinchCore
import FinchLoRA

// Dimension letters: N rows of the call, M encoder rows, C d_model, I inner width (H · D),
// F d_ff, H heads, D d_kv.

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
    /// One block over `n` rows: x [N, C] becomes the block's output in place; what backward needs
    /// is written to `acts` (the block's input included). `li` indexes the layer in its stack (for
    /// caches). `context` goes to every linear of the block.
    func blockForward(_ block: T5Block, layer li: Int, x: UnsafeMutablePointer<Float>, rows n: Int,
                      selfSegments: [T5SelfSegment], causal: Bool, cross: T5CrossKeys?, acts a: T5BlockActs,
                      context: PassContext) {
        let c = config.dModel, inner = config.innerDim, h = config.numHeads, d = config.dKv
        func project(_ l: T5Linear, _ input: UnsafePointer<Float>, into y: Buffer<Float>, rows: Int) {
            block[l].forward(y: y.pointer, x: input, xBF16: nil, rows: rows, accumulate: false, scratch: scratch, context: context)
        }
        a.x.pointer.update(from: x, count: n * c)

        // Self-attention.
        norm(a.h1.pointer, rstd: a.rstd1.pointer, x, block.selfNorm, rows: n)
        project(.q, a.h1.pointer, into: a.q, rows: n)
        project(.k, a.h1.pointer, into: a.k, rows: n)
        project(.v, a.h1.pointer, into: a.v, rows: n)
        for s in selfSegments {
            let r = s.rows
            var kp = UnsafePointer(a.k.pointer + r.lowerBound * inner), vp = UnsafePointer(a.v.pointer + r.lowerBound * inner)
            var keys = r.count, past = 0
            if let cache = s.cache {
                past = cache.length
                cache.append(layer: li, k: kp, v: vp, rows: r.count)
                kp = UnsafePointer(cache.selfK[li].pointer); vp = UnsafePointer(cache.selfV[li].pointer)
                keys = past + r.count
            }
            backend.biasedAttentionForward(out: a.att.pointer + r.lowerBound * inner, logsumexp: a.lse.pointer + r.lowerBound * h,
                                    q: a.q.pointer + r.lowerBound * inner, k: kp, v: vp, bias: s.bias.pointer,
                                    shape: .init(queries: r.count, keys: keys, heads: h, headDim: d,
                                                 causalOffset: causal ? past : nil))
        }
        block[.o].forward(y: x, x: a.att.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)

        // Cross-attention (decoder blocks).
        if let cross, let crossNorm = block.crossNorm {
            a.x1.pointer.update(from: x, count: n * c)
            norm(a.hc.pointer, rstd: a.rstdc.pointer, x, crossNorm, rows: n)
            project(.crossQ, a.hc.pointer, into: a.cq, rows: n)
            switch cross {
            case let .compute(enc, m, ranges):
                project(.crossK, enc, into: a.ck, rows: m)
                project(.crossV, enc, into: a.cv, rows: m)
                for (s, keys) in zip(selfSegments, ranges) {
                    let r = s.rows
                    backend.biasedAttentionForward(out: a.catt.pointer + r.lowerBound * inner, logsumexp: a.clse.pointer + r.lowerBound * h,
                                            q: a.cq.pointer + r.lowerBound * inner, k: a.ck.pointer + keys.lowerBound * inner,
                                            v: a.cv.pointer + keys.lowerBound * inner, bias: nil,
                                            shape: .init(queries: r.count, keys: keys.count, heads: h, headDim: d))
                }
            case .cached(let caches):
                for (s, cache) in zip(selfSegments, caches) {
                    let r = s.rows
                    backend.biasedAttentionForward(out: a.catt.pointer + r.lowerBound * inner, logsumexp: nil,
                                            q: a.cq.pointer + r.lowerBound * inner, k: cache.crossK[li].pointer,
                                            v: cache.crossV[li].pointer, bias: nil,
                                            shape: .init(queries: r.count, keys: cache.encoderRows, heads: h, headDim: d))
                }
            }
            block[.crossO].forward(y: x, x: a.catt.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
        }

        // Feed-forward.
        a.x2.pointer.update(from: x, count: n * c)
        norm(a.h2.pointer, rstd: a.rstd2.pointer, x, block.ffnNorm, rows: n)
        project(config.isGated ? .wi0 : .wi, a.h2.pointer, into: a.g, rows: n)
        if config.isGated { project(.wi1, a.h2.pointer, into: a.u, rows: n) }
        T5FeedForward.activate(a.a.pointer, a.g.pointer, up: config.isGated ? a.u.pointer : nil, count: n * config.dFf,
                               activation: activation, backend: backend)
        block[.wo].forward(y: x, x: a.a.pointer, xBF16: nil, rows: n, accumulate: true, scratch: scratch, context: context)
    }

    /// Backward of `blockForward` over its `n` rows: `dx` [N, C] holds ∂loss/∂(block output) and
    /// becomes ∂loss/∂(block input); the adapters' gradients are added; for decoder blocks
    /// `dEncoder` [M, C] accumulates ∂loss/∂(encoder output) through cross-attention's keys and
    /// values. `b` holds the temporaries; `context` is the forward's.
    func blockBackward(_ block: T5Block, acts a: T5BlockActs, rows n: Int, dx: UnsafeMutablePointer<Float>,
                       selfSegments: [T5SelfSegment], causal: Bool,
                       cross: (encoderOutput: UnsafePointer<Float>, rows: Int, ranges: [Range<Int>], dEncoder: UnsafeMutablePointer<Float>)?,
                       buffers b: T5BackwardBuffers, context: PassContext) {
        let c = config.dModel, inner = config.innerDim, f = config.dFf, h = config.numHeads, d = config.dKv
        func linearBackward(_ l: T5Linear, dx: UnsafeMutablePointer<Float>, dy: Buffer<Float>, x: UnsafePointer<Float>, rows: Int,
                            accumulate: Bool) {
            block[l].backward(dx: dx, dy: dy.pointer, x: x, rows: rows, accumulate: accumulate, scratch: scratch, context: context)
        }

        // Feed-forward: x_out = x2 + wo(act(...)).
        block[.wo].backward(dx: b.da.pointer, dy: dx, x: a.a.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        T5FeedForward.activateBackward(dg: b.dg.pointer, du: config.isGated ? b.du.pointer : nil, da: b.da.pointer, g: a.g.pointer,
                                       up: config.isGated ? a.u.pointer : nil, count: n * f, activation: activation,
                                       act: b.act.pointer, dact: b.dact.pointer, backend: backend)
        linearBackward(config.isGated ? .wi0 : .wi, dx: b.dh.pointer, dy: b.dg, x: a.h2.pointer, rows: n, accumulate: false)
        if config.isGated { linearBackward(.wi1, dx: b.dh.pointer, dy: b.du, x: a.h2.pointer, rows: n, accumulate: true) }
        backend.rmsNormBackward(dx: dx, dweight: nil, dout: b.dh.pointer, x: a.x2.pointer, weight: block.ffnNorm.pointer,
                         rstd: a.rstd2.pointer, rows: n, channels: c)

        // Cross-attention: x2 = x1 + o(attention(q(norm(x1)), k(enc), v(enc))).
        if let cross, let crossNorm = block.crossNorm {
            block[.crossO].backward(dx: b.datt.pointer, dy: dx, x: a.catt.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
            b.dq.pointer.update(repeating: 0, count: n * inner)          // attention backward accumulates
            b.dk.pointer.update(repeating: 0, count: cross.rows * inner)
            b.dv.pointer.update(repeating: 0, count: cross.rows * inner)
            for (s, keys) in zip(selfSegments, cross.ranges) {
                let r = s.rows
                backend.biasedAttentionBackward(dq: b.dq.pointer + r.lowerBound * inner, dk: b.dk.pointer + keys.lowerBound * inner,
                                         dv: b.dv.pointer + keys.lowerBound * inner, dout: b.datt.pointer + r.lowerBound * inner,
                                         out: a.catt.pointer + r.lowerBound * inner, logsumexp: a.clse.pointer + r.lowerBound * h,
                                         q: a.cq.pointer + r.lowerBound * inner, k: a.ck.pointer + keys.lowerBound * inner,
                                         v: a.cv.pointer + keys.lowerBound * inner, bias: nil,
                                         shape: .init(queries: r.count, keys: keys.count, heads: h, headDim: d))
            }
            linearBackward(.crossQ, dx: b.dh.pointer, dy: b.dq, x: a.hc.pointer, rows: n, accumulate: false)
            linearBackward(.crossK, dx: cross.dEncoder, dy: b.dk, x: cross.encoderOutput, rows: cross.rows, accumulate: true)
            linearBackward(.crossV, dx: cross.dEncoder, dy: b.dv, x: cross.encoderOutput, rows: cross.rows, accumulate: true)
            backend.rmsNormBackward(dx: dx, dweight: nil, dout: b.dh.pointer, x: a.x1.pointer, weight: crossNorm.pointer,
                             rstd: a.rstdc.pointer, rows: n, channels: c)
        }

        // Self-attention: x1 = x + o(attention(q, k, v of norm(x)) + bias).
        block[.o].backward(dx: b.datt.pointer, dy: dx, x: a.att.pointer, rows: n, accumulate: false, scratch: scratch, context: context)
        for g in [b.dq, b.dk, b.dv] { g.pointer.update(repeating: 0, count: n * inner) }
        for s in selfSegments {
            let r = s.rows, o = r.lowerBound * inner
            backend.biasedAttentionBackward(dq: b.dq.pointer + o, dk: b.dk.pointer + o, dv: b.dv.pointer + o, dout: b.datt.pointer + o,
                                     out: a.att.pointer + o, logsumexp: a.lse.pointer + r.lowerBound * h,
                                     q: a.q.pointer + o, k: a.k.pointer + o, v: a.v.pointer + o, bias: s.bias.pointer,
                                     shape: .init(queries: r.count, keys: r.count, heads: h, headDim: d, causalOffset: causal ? 0 : nil))
        }
        linearBackward(.q, dx: b.dh.pointer, dy: b.dq, x: a.h1.pointer, rows: n, accumulate: false)
        linearBackward(.k, dx: b.dh.pointer, dy: b.dk, x: a.h1.pointer, rows: n, accumulate: true)
        linearBackward(.v, dx: b.dh.pointer, dy: b.dv, x: a.h1.pointer, rows: n, accumulate: true)
        backend.rmsNormBackward(dx: dx, dweight: nil, dout: b.dh.pointer, x: a.x.pointer, weight: block.selfNorm.pointer,
                         rstd: a.rstd1.pointer, rows: n, channels: c)
    }
}

/// T5's FFN activations, plain (`act(g)`) or gated (`act(g) · up`), with their backward, on the
/// model's backend.
enum T5FeedForward {
    /// a [count] = act(g) (· up when gated).
    static func activate(_ a: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, up: UnsafePointer<Float>?,
                         count: Int, activation: Activation, backend: any ComputeBackend) {
        backend.activationForward(y: a, x: g, count: count, activation: activation)
        if let up { backend.multiply(out: a, a, up, count: count) }
    }

    /// dg (= ∂/∂g) and, when gated, du (= ∂/∂up), overwritten, from da = ∂loss/∂a; `act` (gated)
    /// and `dact` [count] are the caller's temporaries.
    static func activateBackward(dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>?, da: UnsafePointer<Float>,
                                 g: UnsafePointer<Float>, up: UnsafePointer<Float>?, count: Int, activation: Activation,
                                 act: UnsafeMutablePointer<Float>, dact: UnsafeMutablePointer<Float>,
                                 backend: any ComputeBackend) {
        // The gradient reaching act(g): da · up when gated.
        var reaching = da
        if let up, let du {
            backend.activationForward(y: act, x: g, count: count, activation: activation)
            backend.multiply(out: du, da, act, count: count)
            backend.multiply(out: dact, da, up, count: count)
            reaching = UnsafePointer(dact)
        }
        dg.update(repeating: 0, count: count)
        backend.activationBackward(dx: dg, dy: reaching, x: g, count: count, activation: activation)
    }
}
