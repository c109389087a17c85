import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// The sparse mixture-of-experts block against transformers' MixtralSparseMoeBlock and Qwen2MoeSparseMoeBlock
/// (shared expert) on random weights (Scripts/fixtures/make_moe_block_reference.py): the output and the
/// gradient with respect to x, which flows through every chosen expert, the routing weights and the router.
final class SparseMoETests: XCTestCase {
    static func block(_ file: SafeTensorsFile, _ name: String, experts e: Int, topK k: Int, normalize: Bool,
                      intermediate f: Int, shared s: Int?, hidden c: Int) throws -> SparseMoE {
        func weight(_ values: [Float], out: Int, in: Int) -> LinearWeight {
            LinearWeight(outFeatures: out, inFeatures: `in`, values: Buffer(values), dtype: .f32)
        }
        let gateUp = try file.floats("\(name).experts.gate_up_proj"), down = try file.floats("\(name).experts.down_proj")
        let experts = (0..<e).map { x -> SparseMoE.Expert in
            let base = x * 2 * f * c
            return SparseMoE.Expert(gate: weight(Array(gateUp[base..<(base + f * c)]), out: f, in: c),
                                    up: weight(Array(gateUp[(base + f * c)..<(base + 2 * f * c)]), out: f, in: c),
                                    down: weight(Array(down[(x * c * f)..<((x + 1) * c * f)]), out: c, in: f))
        }
        var shared: SparseMoE.Expert?, sharedGate: LinearWeight?
        if let s {
            shared = SparseMoE.Expert(gate: weight(try file.floats("\(name).shared_expert.gate_proj.weight"), out: s, in: c),
                                      up: weight(try file.floats("\(name).shared_expert.up_proj.weight"), out: s, in: c),
                                      down: weight(try file.floats("\(name).shared_expert.down_proj.weight"), out: c, in: s))
            sharedGate = weight(try file.floats("\(name).shared_expert_gate.weight"), out: 1, in: c)
        }
        return SparseMoE(router: weight(try file.floats("\(name).gate.weight"), out: e, in: c), experts: experts,
                         shared: shared, sharedGate: sharedGate, topK: k, normalize: normalize)
    }

    func testForwardAndInputGradientEqualTransformers() throws {
        let file = try SafeTensorsFile(path: try Fixtures.required("moe-block/block.safetensors"))
        let json = try JSONParser.parse(try String(contentsOfFile: try Fixtures.required("moe-block/expected.json"), encoding: .utf8))
        let n = try XCTUnwrap(json["rows"]?.wholeNumberValue), c = try XCTUnwrap(json["hidden"]?.wholeNumberValue)
        for cs in try XCTUnwrap(json["cases"]?.arrayValue) {
            let name = try XCTUnwrap(cs["name"]?.stringValue)
            let moe = try Self.block(file, name, experts: try XCTUnwrap(cs["experts"]?.wholeNumberValue),
                                     topK: try XCTUnwrap(cs["top_k"]?.wholeNumberValue), normalize: try XCTUnwrap(cs["normalized"]?.boolValue),
                                     intermediate: try XCTUnwrap(cs["intermediate"]?.wholeNumberValue),
                                     shared: cs["shared_intermediate"]?.wholeNumberValue, hidden: c)
            let x = Buffer(try file.floats("\(name).x")), dOut = Buffer(try file.floats("\(name).c"))
            let out = Buffer<Float>(count: n * c), dx = Buffer<Float>(count: n * c)
            let scratch = Scratch()
            let saved = moe.forward(out: out.pointer, x: x.pointer, rows: n, accumulate: false, scratch: scratch, context: .plain)
            let want = try file.floats("\(name).out")
            XCTAssertLessThan(maxAbsDiff(out.array, want), 2e-6, "\(name): output")
            XCTAssertEqual(Set(saved.routes.chosen).count, moe.experts.count, "\(name): every expert is chosen by some row")
            moe.backward(dx: dx.pointer, dOut: dOut.pointer, x: x.pointer, rows: n, saved: saved, accumulate: false,
                         scratch: scratch, context: .plain)
            let wantDx = try file.floats("\(name).dx")
            XCTAssertLessThan(maxAbsDiff(dx.array, wantDx) / wantDx.map(abs).max()!, 2e-6, "\(name): dx")
        }
    }
}
