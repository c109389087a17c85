import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import FinchQuant
import Foundation
import FinchTestSupport
import XCTest

/// QLoRA on SmolLM2: the blocks' linear layers in NF4 with double quantization. A 4-bit layer
/// multiplies exactly what bitsandbytes would (its dequantized weight, checked bit for bit in
/// FinchQuantTests) through the same GEMM as an uncompressed weight, so the quantized model must
/// equal — bit for bit — a float model holding the dequantized weights: logits, loss and every
/// LoRA gradient, in f32 and in bf16 compute.
final class QLoRATests: XCTestCase {
    static let quant = QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true)

    /// The GGUF's weights with every block linear replaced by its NF4 round trip.
    struct RoundTripped: WeightSource {
        let base: GGUFWeightSource
        let quant: QuantizationConfig
        var path: String { base.path }
        var tensorNames: [String] { base.tensorNames }
        func shape(of name: String) -> [Int]? { base.shape(of: name) }
        func ropeFrequencyFactors() throws -> [Float]? { try base.ropeFrequencyFactors() }
        func load(_ name: String) throws -> Buffer<Float> {
            let w = try base.load(name)
            guard name.hasPrefix("model.layers."), name.hasSuffix("_proj.weight"), let s = shape(of: name) else { return w }
            let q = try FourBitTensor.quantize(UnsafeBufferPointer(w.buffer), shape: s, type: quant.type,
                                               blocksize: quant.blocksize, doubleQuant: quant.doubleQuant)
            return q.dequantize()
        }
    }

    func models(compute: WeightDType) throws -> (quantized: DecoderModel, reference: DecoderModel) {
        let path = try Fixtures.smolLM2()
        let file = try GGUFFile(path: path)
        let config = try LlamaConfig.load(gguf: file)
        let source = GGUFWeightSource(file: file, config: config)
        var q = Self.quant
        q.computeDType = compute
        let quantized = try DecoderModel.load(from: source, config: config, dtype: compute, quantization: q)
        let reference = try DecoderModel.load(from: RoundTripped(base: source, quant: q), config: config, dtype: compute)
        return (quantized, reference)
    }

    static let batch: [TrainingSequence] = [
        TrainingSequence(tokens: (0..<48).map { Int32(($0 * 7919 + 13) % 49152) }),
        TrainingSequence(tokens: (0..<31).map { Int32(($0 * 104729 + 5) % 49152) }),
    ]

    func check(compute: WeightDType) throws {
        let (quantized, reference) = try models(compute: compute)
        XCTAssertLessThan(quantized.weightBytes * 2, reference.weightBytes, "4-bit blocks should at least halve the weights")
        // Inference: logits of every position of a prompt (expanded layers: the same GEMM, bit for bit).
        let prompt = Array(Self.batch[0].tokens.prefix(20)).map(Int.init)
        let a = try quantized.logits(tokens: [prompt])[0].flatMap { $0 }, b = try reference.logits(tokens: [prompt])[0].flatMap { $0 }
        XCTAssertEqual(maxAbsDiff(a, b), 0, "\(compute) logits of \(prompt.count) tokens")
        // Decoding one row multiplies straight from the nibbles in f32 (blocks summed, then scaled):
        // f32 equals the reference up to rounding; with bf16 compute the 4-bit products are the
        // same f32 ones (bf16 stays for embeddings and head), so it equals f32 compute on a bf16 model.
        let one = [Int(Self.batch[1].tokens[0])]
        let d = try quantized.logits(tokens: [one])[0][0], r = try reference.logits(tokens: [one])[0][0]
        if compute == .f32 {
            XCTAssertLessThan(maxAbsDiff(d, r), 1e-5 * r.map(abs).max()!, "f32 decode")
        } else {
            let file = try GGUFFile(path: try Fixtures.smolLM2())
            let config = try LlamaConfig.load(gguf: file)
            let f32Products = try DecoderModel.load(from: GGUFWeightSource(file: file, config: config), config: config,
                                                  dtype: .bf16, quantization: Self.quant)
            XCTAssertEqual(d, try f32Products.logits(tokens: [one])[0][0], "bf16 decode")
        }
        // Training: an all-linear LoRA (B randomized so every gradient is non-trivial) on both.
        for m in [quantized, reference] { try m.attachRandomizedAdapter(r: 8, name: "qlora") }
        let lq = try quantized.forwardBackward(Self.batch)
        let lr = try reference.forwardBackward(Self.batch)
        XCTAssertEqual(lq.sum, lr.sum)
        let gq = quantized.trainableParameters(), gr = reference.trainableParameters()
        XCTAssertEqual(gq.count, 30 * 7 * 2)
        for (a, b) in zip(gq, gr) { XCTAssertEqual(a.grad.array, b.grad.array, a.name) }
    }

    func testF32ComputeEqualsDequantizedModel() throws { try check(compute: .f32) }
    func testBF16ComputeEqualsDequantizedModel() throws { try check(compute: .bf16) }

    /// Merging into a 4-bit base is dequantize → add → requantize (PEFT + bitsandbytes' way): the
    /// merged weight is exactly the quantization of W + ΔW and the rounding is reported. It is
    /// lossy — an adapter's ΔW is often below half a 4-bit step, so much of it rounds away (the
    /// logits drift is printed) — which is why `finch merge` exports 16/32-bit weights instead.
    func testMergeIntoFourBitBaseRequantizesAndReportsRounding() throws {
        let (quantized, _) = try models(compute: .f32)
        var config = AdapterConfig(r: 4, loraAlpha: 8, targetModules: .names(["q_proj", "v_proj"]))
        config.loraDropout = 0
        try quantized.attachRandomizedAdapter(config: config, name: "m", seed: 5, bScale: 0.05, bSeed: 2)
        let layer = quantized.layers[3][.q] as! LoRALinear
        let sum = effectiveWeight(layer)   // deq(W) + scaling·B·A, f32
        let tokens = [(0..<16).map { ($0 * 977 + 3) % 49152 }]
        let adapted = try quantized.logits(tokens: tokens)[0].flatMap { $0 }
        try quantized.mergeActiveAdapter()
        let merged = try quantized.logits(tokens: tokens)[0].flatMap { $0 }
        let expected = try FourBitTensor.quantize(UnsafeBufferPointer(sum.buffer), shape: [576, 576], type: .nf4,
                                                  blocksize: 64, doubleQuant: true).dequantize()
        XCTAssertEqual(layer.base.floatValues().array, expected.array)
        XCTAssertEqual(layer.lastMergeRoundingError, maxAbsDiff(expected.array, sum.array))
        XCTAssertGreaterThan(layer.lastMergeRoundingError, 0)
        print("merge into NF4: weight rounding up to \(layer.lastMergeRoundingError), logits rms drift \(rms(merged, adapted))")
        // Unmerging subtracts ΔW and requantizes again.
        try quantized.unmergeAdapter()
        XCTAssertGreaterThan(layer.lastMergeRoundingError, 0)
    }

    func rms(_ a: [Float], _ b: [Float]) -> Float {
        (zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Float(a.count)).squareRoot()
    }
}
