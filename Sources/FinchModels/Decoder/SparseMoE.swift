import FinchCore
import FinchLoRA
import Foundation

// Dimension letters: N rows, C hidden size, F an expert's intermediate size, S the shared expert's,
// E experts, K experts chosen per row, M the rows one expert serves.

/// A sparse mixture-of-experts MLP, as transformers computes Mixtral's `MixtralSparseMoeBlock`, Qwen2-MoE's
/// `Qwen2MoeSparseMoeBlock`, Qwen3-MoE's and OLMoE's: the router (a linear [E, C]) picks K experts per row
/// (`MoERouting`), each expert (gate, up [F, C], down [C, F], SwiGLU) runs over the rows it serves only, gathered
/// together, and its output, times the row's weight for it, is added to the row; a shared expert (Qwen2-MoE),
/// times sigmoid(x · shared_gateᵀ), is added to every row. Every weight is a `LinearLayer`, so adapters go on
/// the router and on each expert's linears as on any other. Backward recomputes each expert's products from x.
final class SparseMoE: @unchecked Sendable {
    struct Expert {
        var gate: any LinearLayer, up: any LinearLayer, down: any LinearLayer
    }
    var router: any LinearLayer
    var experts: [Expert]
    var shared: Expert?
    /// [1, C]: the shared expert's sigmoid gate.
    var sharedGate: (any LinearLayer)?
    let topK: Int
    let normalize: Bool

    init(router: any LinearLayer, experts: [Expert], shared: Expert? = nil, sharedGate: (any LinearLayer)? = nil, topK: Int, normalize: Bool) {
        precondition(shared == nil || sharedGate != nil, "a shared expert needs its gate")
        self.router = router; self.experts = experts; self.shared = shared; self.sharedGate = sharedGate
        self.topK = topK; self.normalize = normalize
    }

    var hiddenSize: Int { router.inFeatures }

    /// What backward needs of a forward: the routing of its rows.
    struct Saved { var routes: MoERouting.Routes }

    /// The routing of x [N, C] (what a recomputed forward needs for backward).
    func route(x: UnsafePointer<Float>, rows n: Int, scratch: Scratch, context: PassContext) -> Saved {
        let e = experts.count
        let logits = Buffer<Float>(count: n * e)
        router.forward(y: logits.pointer, x: x, xBF16: nil, rows: n, accumulate: false, scratch: scratch, context: context)
        return Saved(routes: MoERouting.route(logits: logits.pointer, rows: n, experts: e, topK: topK, normalize: normalize))
    }

    /// out [N, C] (+)= the block of x [N, C]; returns the routing (for backward and the auxiliary loss).
    @discardableResult
    func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows n: Int, accumulate: Bool,
                 scratch: Scratch, context: PassContext) -> Saved {
        let c = hiddenSize
        if !accumulate { out.update(repeating: 0, count: n * c) }
        let saved = route(x: x, rows: n, scratch: scratch, context: context), routes = saved.routes
        let groups = MoERouting.groups(routes)
        for ex in groups.used {
            let entries = groups.entries(of: ex), m = entries.count
            let xg = gather(x, entries: entries, columns: c)
            let y = Buffer<Float>(count: m * c)
            expertForward(experts[ex], y: y.pointer, x: xg.pointer, rows: m, scratch: scratch, context: gathered(context, entries))
            for (i, entry) in entries.enumerated() {
                let w = routes.weights[Int(entry)], row = Int(entry) / topK
                let src = y.pointer + i * c, dst = out + row * c
                for j in 0..<c { dst[j] += w * src[j] }
            }
        }
        if let shared, let sharedGate {
            let y = Buffer<Float>(count: n * c), g = Buffer<Float>(count: n)
            expertForward(shared, y: y.pointer, x: x, rows: n, scratch: scratch, context: context)
            sharedGate.forward(y: g.pointer, x: x, xBF16: nil, rows: n, accumulate: false, scratch: scratch, context: context)
            for r in 0..<n {
                let s = 1 / (1 + expf(-g[r])), src = y.pointer + r * c, dst = out + r * c
                for j in 0..<c { dst[j] += s * src[j] }
            }
        }
        return saved
    }

    /// dx [N, C] (+)= the gradient of the block given dOut [N, C] for the forward of x that saved `saved`, with the
    /// adapters' gradients added to their buffers; `routerDLogits` [N, E] (the auxiliary loss's, if any) is
    /// added to the router's gradient before it flows to x.
    func backward(dx: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, x: UnsafePointer<Float>, rows n: Int,
                  saved: Saved, accumulate: Bool, routerDLogits: UnsafePointer<Float>? = nil, scratch: Scratch, context: PassContext) {
        let c = hiddenSize, e = experts.count, k = topK, routes = saved.routes
        if !accumulate { dx.update(repeating: 0, count: n * c) }
        let dWeights = Buffer<Float>(count: n * k)
        let groups = MoERouting.groups(routes)
        for ex in groups.used {
            let entries = groups.entries(of: ex), m = entries.count
            let xg = gather(x, entries: entries, columns: c)
            let dy = Buffer<Float>(count: m * c), y = Buffer<Float>(count: m * c)
            let f = experts[ex].gate.outFeatures
            let gate = Buffer<Float>(count: m * f), up = Buffer<Float>(count: m * f), h = Buffer<Float>(count: m * f)
            let rowContext = gathered(context, entries)
            expertForward(experts[ex], y: y.pointer, x: xg.pointer, rows: m, scratch: scratch, context: rowContext,
                          keep: (gate.pointer, up.pointer, h.pointer))
            for (i, entry) in entries.enumerated() {
                let row = Int(entry) / k, w = routes.weights[Int(entry)]
                let d = dOut + row * c, yi = y.pointer + i * c, dyi = dy.pointer + i * c
                var dot: Float = 0
                for j in 0..<c { dot += yi[j] * d[j]; dyi[j] = w * d[j] }
                dWeights[Int(entry)] = dot
            }
            let dxg = Buffer<Float>(count: m * c)
            expertBackward(experts[ex], dx: dxg.pointer, dy: dy.pointer, x: xg.pointer, rows: m, gate: gate.pointer, up: up.pointer,
                           h: h.pointer, scratch: scratch, context: rowContext)
            for (i, entry) in entries.enumerated() {
                let row = Int(entry) / k
                context.backend.add(dx + row * c, dxg.pointer + i * c, count: c)
            }
        }
        // The router: dlogits from the weights (and the auxiliary loss), then into x.
        let dLogits = Buffer<Float>(count: n * e)
        MoERouting.backward(dLogits: dLogits.pointer, dWeights: dWeights.pointer, routes: routes, accumulate: false)
        if let routerDLogits { context.backend.add(dLogits.pointer, routerDLogits, count: n * e) }
        router.backward(dx: dx, dy: dLogits.pointer, x: x, rows: n, accumulate: true, scratch: scratch, context: context)
        if let shared, let sharedGate {
            let f = shared.gate.outFeatures
            let y = Buffer<Float>(count: n * c), g = Buffer<Float>(count: n)
            let gate = Buffer<Float>(count: n * f), up = Buffer<Float>(count: n * f), h = Buffer<Float>(count: n * f)
            expertForward(shared, y: y.pointer, x: x, rows: n, scratch: scratch, context: context, keep: (gate.pointer, up.pointer, h.pointer))
            sharedGate.forward(y: g.pointer, x: x, xBF16: nil, rows: n, accumulate: false, scratch: scratch, context: context)
            let dy = Buffer<Float>(count: n * c), dg = Buffer<Float>(count: n)
            for r in 0..<n {
                let s = 1 / (1 + expf(-g[r])), d = dOut + r * c, yr = y.pointer + r * c, dyr = dy.pointer + r * c
                var dot: Float = 0
                for j in 0..<c { dot += yr[j] * d[j]; dyr[j] = s * d[j] }
                dg[r] = dot * s * (1 - s)
            }
            expertBackward(shared, dx: dx, dy: dy.pointer, x: x, rows: n, gate: gate.pointer, up: up.pointer, h: h.pointer,
                           scratch: scratch, context: context, accumulate: true)
            sharedGate.backward(dx: dx, dy: dg.pointer, x: x, rows: n, accumulate: true, scratch: scratch, context: context)
        }
    }

    /// The context of an expert's gathered rows: per-row adapters (batched serving) follow their rows.
    private func gathered(_ context: PassContext, _ entries: ArraySlice<Int32>) -> PassContext {
        guard let spans = context.rowAdapters else { return context }
        // Runs of gathered rows with the same adapter; rows with none (the base) need no span.
        var out: [AdapterSpan] = []
        for (i, entry) in entries.enumerated() {
            let row = Int(entry) / topK
            guard let adapter = spans.first(where: { $0.rows.contains(row) })?.adapter else { continue }
            if let last = out.last, last.adapter == adapter, last.rows.upperBound == i {
                out[out.count - 1].rows = last.rows.lowerBound..<(i + 1)
            } else {
                out.append(AdapterSpan(rows: i..<(i + 1), adapter: adapter))
            }
        }
        var c = context
        c.rowAdapters = out
        return c
    }

    /// Rows of x [N, C] for the entries (row · K + slot) of one expert: [M, C].
    private func gather(_ x: UnsafePointer<Float>, entries: ArraySlice<Int32>, columns c: Int) -> Buffer<Float> {
        let out = Buffer<Float>(count: entries.count * c)
        for (i, entry) in entries.enumerated() { (out.pointer + i * c).update(from: x + (Int(entry) / topK) * c, count: c) }
        return out
    }

    /// y [M, C] = down(silu(gate(x)) · up(x)); `keep` receives gate, up and h [M, F].
    private func expertForward(_ ex: Expert, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, rows m: Int, scratch: Scratch,
                               context: PassContext,
                               keep: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)? = nil) {
        let f = ex.gate.outFeatures
        let own = keep == nil ? (Buffer<Float>(count: m * f), Buffer<Float>(count: m * f), Buffer<Float>(count: m * f)) : nil
        let (g, u, h) = keep ?? (own!.0.pointer, own!.1.pointer, own!.2.pointer)
        ex.gate.forward(y: g, x: x, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
        ex.up.forward(y: u, x: x, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
        context.backend.swiGLUForward(h: h, gate: g, up: u, count: m * f)
        ex.down.forward(y: y, x: h, xBF16: nil, rows: m, accumulate: false, scratch: scratch, context: context)
        withExtendedLifetime(own) {}
    }

    /// dx [M, C] (+)= the expert's backward given dy [M, C] and its forward's gate, up and h.
    private func expertBackward(_ ex: Expert, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                rows m: Int, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, h: UnsafePointer<Float>,
                                scratch: Scratch, context: PassContext, accumulate: Bool = false) {
        let f = ex.gate.outFeatures
        let dh = Buffer<Float>(count: m * f), dgate = Buffer<Float>(count: m * f), dup = Buffer<Float>(count: m * f)
        ex.down.backward(dx: dh.pointer, dy: dy, x: h, rows: m, accumulate: false, scratch: scratch, context: context)
        context.backend.swiGLUBackward(dgate: dgate.pointer, dup: dup.pointer, dh: dh.pointer, gate: gate, up: up, count: m * f)
        ex.gate.backward(dx: dx, dy: dgate.pointer, x: x, rows: m, accumulate: accumulate, scratch: scratch, context: context)
        ex.up.backward(dx: dx, dy: dup.pointer, x: x, rows: m, accumulate: true, scratch: scratch, context: context)
    }
}
