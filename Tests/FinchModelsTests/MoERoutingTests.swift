import FinchCore
import FinchFormats
import FinchTestSupport
import Foundation
import XCTest

/// Mixture-of-experts routing (FinchCore's MoERouting) against transformers' own routers and
/// load-balancing loss (Scripts/fixtures/make_moe_routing_reference.py: Mixtral, Qwen2-MoE without and
/// OLMoE with norm_topk_prob), and its backward against central differences.
final class MoERoutingTests: XCTestCase {
    func testRoutesAuxLossAndGradientsEqualTransformers() throws {
        let file = try SafeTensorsFile(path: try Fixtures.required("moe-routing/routing.safetensors"))
        let json = try JSONParser.parse(try String(contentsOfFile: try Fixtures.required("moe-routing/expected.json"), encoding: .utf8))
        let n = try XCTUnwrap(json["rows"]?.wholeNumberValue), coef = Float(try XCTUnwrap(json["aux_coef"]?.doubleValue))
        for c in try XCTUnwrap(json["cases"]?.arrayValue) {
            let name = try XCTUnwrap(c["name"]?.stringValue)
            let e = try XCTUnwrap(c["experts"]?.wholeNumberValue), k = try XCTUnwrap(c["top_k"]?.wholeNumberValue)
            let normalized = try XCTUnwrap(c["normalized"]?.boolValue)
            var layers: [MoERouting.Routes] = []
            for l in 0..<2 {
                let logits = try file.floats("\(name).\(l).logits")
                let r = logits.withUnsafeBufferPointer { MoERouting.route(logits: $0.baseAddress!, rows: n, experts: e, topK: k, normalize: normalized) }
                XCTAssertLessThan(maxAbsDiff(r.probabilities, try file.floats("\(name).\(l).probabilities")), 3e-7, name)   // 1 ulp seen (torch sums in another order)
                let chosen = try file.bytes("\(name).\(l).chosen").bindMemory(to: Int32.self)
                XCTAssertEqual(r.chosen, Array(chosen), "\(name) layer \(l): chosen experts")
                XCTAssertLessThan(maxAbsDiff(r.weights, try file.floats("\(name).\(l).weights")), 3e-7, name)
                layers.append(r)
            }
            let aux = MoERouting.loadBalancingLoss(layers)
            XCTAssertEqual(aux, try XCTUnwrap(c["aux_loss"]?.doubleValue), accuracy: 2e-6, "\(name): aux loss")
            // d/dlogits of Σ coefficients · weights + coef · aux.
            var grads = layers.map { [Float](repeating: 0, count: $0.rows * e) }
            for l in 0..<2 {
                let dw = try file.floats("\(name).\(l).coefficients")
                grads[l].withUnsafeMutableBufferPointer { g in
                    dw.withUnsafeBufferPointer { MoERouting.backward(dLogits: g.baseAddress!, dWeights: $0.baseAddress!, routes: layers[l], accumulate: false) }
                }
            }
            let p0 = grads[0].withUnsafeMutableBufferPointer { $0.baseAddress! }, p1 = grads[1].withUnsafeMutableBufferPointer { $0.baseAddress! }
            MoERouting.loadBalancingBackward(layers, scale: coef, dLogits: [p0, p1], accumulate: true)
            for l in 0..<2 {
                let want = try file.floats("\(name).\(l).dlogits")
                let scale = want.map(abs).max()!
                XCTAssertLessThan(maxAbsDiff(grads[l], want) / scale, 2e-6, "\(name) layer \(l): dlogits")
            }
            // Every expert's rows, in row order.
            let g = MoERouting.groups(layers[0])
            XCTAssertEqual(g.offsets.last, n * k)
            for x in 0..<e {
                let rows = g.entries(of: x).map { Int($0) }
                XCTAssertEqual(rows, rows.sorted())
                XCTAssertTrue(rows.allSatisfy { Int(layers[0].chosen[$0]) == x })
            }
        }
    }

    /// The backward of the weights and of the auxiliary loss against central differences in f64 of the forward.
    func testBackwardMatchesCentralDifferences() {
        let n = 5, e = 6, k = 2
        var rng = SeededRandom(seed: 3)
        let logits = (0..<(n * e)).map { _ in rng.nextGaussian() }
        let c = (0..<(n * k)).map { _ in rng.nextGaussian() }
        for normalize in [true, false] {
            func loss(_ x: [Float]) -> Double {
                let r = x.withUnsafeBufferPointer { MoERouting.route(logits: $0.baseAddress!, rows: n, experts: e, topK: k, normalize: normalize) }
                var s = 0.0
                for i in 0..<(n * k) { s += Double(c[i] * r.weights[i]) }
                return s + 0.3 * MoERouting.loadBalancingLoss([r])
            }
            let r = logits.withUnsafeBufferPointer { MoERouting.route(logits: $0.baseAddress!, rows: n, experts: e, topK: k, normalize: normalize) }
            var g = [Float](repeating: 0, count: n * e)
            g.withUnsafeMutableBufferPointer { gp in
                c.withUnsafeBufferPointer { MoERouting.backward(dLogits: gp.baseAddress!, dWeights: $0.baseAddress!, routes: r, accumulate: false) }
                MoERouting.loadBalancingBackward([r], scale: 0.3, dLogits: [gp.baseAddress!], accumulate: true)
            }
            let h: Float = 1e-3
            for i in 0..<(n * e) {
                var up = logits, down = logits
                up[i] += h; down[i] -= h
                let fd = (loss(up) - loss(down)) / Double(2 * h)   // the choice does not change within ±h here
                XCTAssertEqual(Double(g[i]), fd, accuracy: 2e-3, "normalize \(normalize), logit \(i)")
            }
        }
    }
}
