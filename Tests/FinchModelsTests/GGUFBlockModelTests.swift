import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchTestSupport
import XCTest

/// A quantized GGUF base kept in its blocks (`LoadedModel.load(ggufBlocks: true)`) against the
/// same file dequantized as it loads, on the real files: SmolLM2 (Q4_1) and Gemma 3 270M
/// (Q4_K_M: Q4_K, Q6_K, Q5_0, Q8_0 …). The blocks are expanded to exactly the dequantized values
/// and multiplied by the same kernels; the embedding-sized head, kept in its blocks too, is
/// multiplied a chunk of rows at a time (`LinearWeight.expansionChunkValues`), which sums its
/// input gradient in another order. So the prompt's logits, a decoding step's, the loss and every
/// LoRA gradient (gradient checkpointing too) must agree within 1e-5 relative (‖a − b‖ / ‖b‖),
/// the gradients within 7e-5: the head's reordered sum, ~1e-7 of its input gradient, grows
/// through the 18 layers of Gemma to 2.4e-5 (measured here; SmolLM2 6e-6).
final class GGUFBlockModelTests: XCTestCase {
    static let batch: [TrainingSequence] = [
        TrainingSequence(tokens: (0..<40).map { Int32(($0 * 7919 + 13) % 49152) }),
        TrainingSequence(tokens: (0..<23).map { Int32(($0 * 104729 + 5) % 49152) }),
    ]

    func check(_ path: String, minimumRatio: Int) throws {
        let blocks = try XCTUnwrap(try LoadedModel.load(path, ggufBlocks: true).model as? DecoderModel)
        let dense = try XCTUnwrap(try LoadedModel.load(path, ggufBlocks: false).model as? DecoderModel)
        var kept: [GGMLType: Int] = [:]
        for (i, layer) in blocks.layers.enumerated() {
            for l in blocks.spec.linears(layer: i) {
                guard case .quantized(let q as GGUFBlockMatrix, _) = layer[l].frozenWeight.storage else {
                    return XCTFail("\(path): \(l) of a block is not kept in its GGUF blocks")
                }
                kept[q.type, default: 0] += 1
            }
        }
        print("[gguf blocks] \(path): kept \(kept.map { "\($0.key.name) ×\($0.value)" }.sorted().joined(separator: ", ")); weights \(blocks.weightBytes >> 20) MiB vs \(dense.weightBytes >> 20) MiB dequantized")
        let blockLinears = blocks.linearSlots.reduce(0) { $0 + $1.get().frozenWeight.byteCount }
        let denseLinears = dense.linearSlots.reduce(0) { $0 + $1.get().frozenWeight.byteCount }
        XCTAssertLessThanOrEqual(blockLinears * minimumRatio, denseLinears, "the blocks' linears take a fraction of f32's")

        XCTAssertTrue(blocks.embedding.storage.isGGUFBlocks && blocks.lmHead.storage.isGGUFBlocks, "the embedding and head kept in blocks")
        var worst = 0.0
        /// ‖a − b‖ / ‖b‖ within `bound`.
        func close(_ a: [Float], _ b: [Float], _ what: String, bound: Double = 1e-5) {
            var d = 0.0, n = 0.0
            for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
            let r = (d / max(n, 1e-300)).squareRoot()
            worst = max(worst, r)
            XCTAssertLessThanOrEqual(r, bound, what)
        }
        let prompt = Array(Self.batch[0].tokens.prefix(20)).map(Int.init)
        close(try blocks.logits(tokens: [prompt])[0].flatMap { $0 }, try dense.logits(tokens: [prompt])[0].flatMap { $0 }, "prompt logits")
        let one = [Int(Self.batch[1].tokens[0])]
        close(try blocks.logits(tokens: [one])[0][0], try dense.logits(tokens: [one])[0][0], "a decoding step's logits")

        for m in [blocks, dense] { try m.attachRandomizedAdapter(r: 4, name: "a") }
        for checkpointing in [false, true] {
            for m in [blocks, dense] { m.zeroGradients() }
            let lb = try blocks.forwardBackward(Self.batch, checkpointing: checkpointing)
            let ld = try dense.forwardBackward(Self.batch, checkpointing: checkpointing)
            XCTAssertEqual(lb.sum, ld.sum, accuracy: 1e-5 * abs(ld.sum), "loss, checkpointing \(checkpointing)")
            for (a, b) in zip(blocks.trainableParameters(), dense.trainableParameters()) {
                close(a.grad.array, b.grad.array, "\(a.name), checkpointing \(checkpointing)", bound: 7e-5)
            }
        }
        print("[gguf blocks] \(path): worst relative difference \(worst)")
    }

    func testSmolLM2Q4_1() throws { try check(try Fixtures.smolLM2(), minimumRatio: 5) }
    func testGemma3Q4_K_M() throws { try check(try Fixtures.gemma3(), minimumRatio: 5) }
}

extension LinearWeight.Storage {
    var isGGUFBlocks: Bool { if case .quantized(_ as GGUFBlockMatrix, _) = self { true } else { false } }
}
