import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
@testable import FinchModels
import FinchTestSupport
import Foundation
import XCTest

/// T5 against transformers and PEFT on the tiny checkpoints of Tests/Fixtures/tiny-t5
/// (Scripts/fixtures/make_tiny_t5.py): T5 v1.1 (gated-GELU, own LM head) and original T5 (ReLU,
/// tied head with the d_model^-0.5 rescale, 3 decoder blocks against 2 encoder blocks). Encoder
/// output and teacher-forced logits within `outputTolerance`; greedy 32 tokens identical (cached decoding).
final class T5Tests: XCTestCase {
    struct Pair: Decodable { let source: [Int]; let target: [Int]; let loss: Double; let greedy32: [Int] }
    struct Batch: Decodable { let input_ids: [[Int32]]; let attention_mask: [[Int32]]; let labels: [[Int32]] }
    struct Expected: Decodable {
        let pairs: [Pair]
        let qv_target_modules: [String]
        let all_target_modules: [String]
        let curve: [Double]
        let batch: Batch
        let qv_loss: Double
        let all_loss: Double

        /// The padded batch as Finch's (source, decoder tokens, labels) pairs, padding dropped.
        func sequences(start: Int32) -> [TrainingSequence] {
            (0..<batch.input_ids.count).map { b in
                let src = zip(batch.input_ids[b], batch.attention_mask[b]).filter { $0.1 == 1 }.map(\.0)
                let target = batch.labels[b].filter { $0 != -100 }
                return TrainingSequence(tokens: [start] + target, labels: [-100] + target, source: src)
            }
        }
    }
    static let variants = ["v1_1", "original"]
    /// Tolerances: ~3x the largest figures measured (printed by each test; docs/models.md, T5).
    static let outputTolerance: Float = 4e-6, gradientTolerance = 3e-6, lossTolerance = 2e-7

    static func load(_ variant: String) throws -> (T5Model, Expected, SafeTensorsFile) {
        let d = Fixtures.path("tiny-t5/\(variant)")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
        return (try T5Model.load(directory: d + "/hf"), e, try SafeTensorsFile(path: d + "/expected.safetensors"))
    }

    func testEncoderOutputAndLogitsMatchTransformers() throws {
        for variant in Self.variants {
            let (m, e, ref) = try Self.load(variant)
            for (i, p) in e.pairs.enumerated() {
                let enc = maxAbsDiff(try m.encoderOutput(p.source), try ref.floats("enc\(i)"))
                XCTAssertLessThan(enc, Self.outputTolerance, "\(variant) enc\(i)")
                let input = [m.config.startTokenId] + p.target.dropLast()
                let got = try m.logits(source: p.source, decoderInput: input).flatMap { $0 }
                let diff = maxAbsDiff(got, try ref.floats("logits\(i)"))
                XCTAssertLessThan(diff, Self.outputTolerance, "\(variant) logits\(i)")
                print("[t5 \(variant)] pair \(i): encoder output within \(enc), logits within \(diff) of transformers")
            }
        }
    }

    func testGreedyDecodingMatchesTransformers() throws {
        for variant in Self.variants {
            let (_, e, _) = try Self.load(variant)
            // The one decode loop (BatchEngine through Generator), as `finch generate` runs it.
            let lm = try LoadedModel.load(Fixtures.path("tiny-t5/\(variant)/hf"))
            let got = try Generator(lm).generate(promptTokens: e.pairs.map(\.source),
                                                 options: GenerationOptions(maxNewTokens: 32, stopTokenIds: []))
            for (i, p) in e.pairs.enumerated() { XCTAssertEqual(got[i].tokens, p.greedy32, "\(variant) pair \(i)") }
        }
    }

    /// LoRA gradients (q/v, PEFT's default for T5, and all-linear) on a padded batch of two pairs
    /// within `gradientTolerance` (relative) of PEFT's, with and without gradient checkpointing (identical).
    func testLoRAGradientsMatchPEFT() throws {
        for variant in Self.variants {
            for (tag, dir) in [("qv", "peft"), ("all", "peft-all")] {
                var first: [[Float]] = []
                for checkpointing in [false, true] {
                    let (m, e, ref) = try Self.load(variant)
                    try m.loadAdapter(directory: Fixtures.path("tiny-t5/\(variant)/\(dir)"))
                    m.zeroGradients()
                    let loss = try m.forwardBackward(e.sequences(start: Int32(m.config.startTokenId)), checkpointing: checkpointing)
                    let wantLoss = tag == "qv" ? e.qv_loss : e.all_loss
                    XCTAssertEqual(loss.mean, wantLoss, accuracy: Self.lossTolerance * wantLoss, "\(variant) \(tag) loss")
                    let params = m.trainableParameters()
                    XCTAssertEqual(params.count, tag == "qv" ? 2 * 2 * (m.encoder.count + 2 * m.decoder.count)
                                   : 2 * (m.encoder.count * 6 + m.decoder.count * 10) + (variant == "v1_1" ? 2 * (m.encoder.count + m.decoder.count) : 0))
                    var worst = 0.0
                    for p in params {
                        let err = relativeError(p.grad.array, try ref.floats("\(tag).\(p.name).grad"))
                        worst = max(worst, err)
                        XCTAssertLessThanOrEqual(err, Self.gradientTolerance, "\(variant) \(tag) \(p.name)")
                    }
                    if checkpointing {
                        for (p, g) in zip(params, first) { XCTAssertEqual(p.grad.array, g, "\(variant) \(tag) checkpointing \(p.name)") }
                    } else {
                        first = params.map(\.grad.array)
                        print("[t5 \(variant)] \(tag): \(params.count) LoRA tensors, gradients within \(worst) (relative) of PEFT, loss within \(abs(loss.mean - wantLoss) / wantLoss)")
                    }
                }
            }
        }
    }

    /// PEFT's saved adapter gives PEFT's logits.
    func testPEFTAdapterLogits() throws {
        for variant in Self.variants {
            let (m, e, ref) = try Self.load(variant)
            try m.loadAdapter(directory: Fixtures.path("tiny-t5/\(variant)/peft"))
            for (i, p) in e.pairs.enumerated() {
                let got = try m.logits(source: p.source, decoderInput: [m.config.startTokenId] + p.target.dropLast()).flatMap { $0 }
                let d = maxAbsDiff(got, try ref.floats("adapter.logits\(i)"))
                XCTAssertLessThan(d, Self.outputTolerance, "\(variant) adapter logits\(i)")
                print("[t5 \(variant)] pair \(i): adapter logits within \(d) of PEFT")
            }
        }
    }
}

/// QLoRA on T5: quantizing on load gives exactly the layers transformers + bitsandbytes save
/// (NF4, double quant; `wo` left in f32 as transformers keeps it), the saved checkpoint loads as
/// stored with the same logits.
final class T5QuantizedTests: XCTestCase {
    func testQuantizedLayersEqualBitsandbytes() throws {
        let d = Fixtures.path("tiny-t5/v1_1")
        let quant = QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true)
        let fresh = try T5Model.load(directory: d + "/hf", quantization: quant)
        let stored = try T5Model.load(directory: d + "/bnb-nf4-dq")
        XCTAssertTrue(fresh.isQuantized && stored.isQuantized)
        var quantized = 0
        for (a, b) in zip(fresh.linearSlots, stored.linearSlots) {
            XCTAssertEqual(a.name, b.name)
            let wa = baseWeight(a.get()), wb = baseWeight(b.get())
            let qa: Bool = if case .quantized = wa.storage { true } else { false }
            let qb: Bool = if case .quantized = wb.storage { true } else { false }
            XCTAssertEqual(qa, qb, a.name)
            XCTAssertEqual(qa, !a.name.hasSuffix(".wo"), a.name)
            if qa { quantized += 1 }
            XCTAssertTrue(wa.floatValues().array == wb.floatValues().array, "\(a.name): values differ")
        }
        XCTAssertEqual(quantized, 2 * 6 + 2 * 10)
        let src = [5, 17, 40, 9, 1], dec = [0, 33, 12]
        XCTAssertEqual(try fresh.logits(source: src, decoderInput: dec), try stored.logits(source: src, decoderInput: dec))
    }
}

/// Batched generation equals one source at a time (greedy), and sampling is seeded per sequence.
final class T5GenerationTests: XCTestCase {
    func testBatchedGreedyEqualsSingle() throws {
        let g = Generator(try LoadedModel.load(Fixtures.path("tiny-t5/v1_1/hf")))
        let sources = [[5, 17, 40, 9, 1], [33, 12, 1], [7, 7, 90, 14, 28, 60, 1]]
        let options = GenerationOptions(maxNewTokens: 16, stopTokenIds: [])
        let batched = try g.generate(promptTokens: sources, options: options)
        for (s, b) in zip(sources, batched) { XCTAssertEqual(try g.generate(promptTokens: [s], options: options)[0].tokens, b.tokens) }
    }
}

/// Strict loading of T5 checkpoints: the stacks' copies of the shared embedding and the unused
/// cross-attention position table of the original checkpoints load (as transformers loads them);
/// anything else left over, or a copy that differs, is refused by name.
final class T5LoadingTests: XCTestCase {
    func rewritten(adding extra: [(String, [Int], [Float])], name: String) throws -> String {
        let src = Fixtures.path("tiny-t5/v1_1/hf")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-t5load-\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        let file = try SafeTensorsFile(path: src + "/model.safetensors")
        var entries: [SafeTensorsWriter.Entry] = try file.tensorNames.map { n in
            .float32(name: n, shape: file.info(n)!.shape, values: try file.floats(n))
        }
        entries += extra.map { .float32(name: $0.0, shape: $0.1, values: $0.2) }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: dir + "/model.safetensors")
        return dir
    }

    func testOriginalCheckpointExtrasLoadAndOthersAreRefused() throws {
        let file = try SafeTensorsFile(path: Fixtures.path("tiny-t5/v1_1/hf/model.safetensors"))
        let shared = try file.floats("shared.weight"), shape = file.info("shared.weight")!.shape
        let base = try T5Model.load(directory: Fixtures.path("tiny-t5/v1_1/hf"))
        let ok = try rewritten(adding: [("encoder.embed_tokens.weight", shape, shared), ("decoder.embed_tokens.weight", shape, shared),
                                        ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", [8, 4], [Float](repeating: 0.5, count: 32))],
                               name: "ok")
        defer { try? FileManager.default.removeItem(atPath: ok) }
        let m = try T5Model.load(directory: ok)
        XCTAssertEqual(try m.logits(source: [5, 17, 1], decoderInput: [0, 9]), try base.logits(source: [5, 17, 1], decoderInput: [0, 9]))

        let stray = try rewritten(adding: [("encoder.block.0.layer.0.SelfAttention.q.bias", [64], [Float](repeating: 0, count: 64))], name: "stray")
        defer { try? FileManager.default.removeItem(atPath: stray) }
        XCTAssertThrowsError(try T5Model.load(directory: stray)) { XCTAssertTrue("\($0)".contains("SelfAttention.q.bias"), "\($0)") }
        let differs = try rewritten(adding: [("encoder.embed_tokens.weight", shape, shared.map { $0 + 1 })], name: "differs")
        defer { try? FileManager.default.removeItem(atPath: differs) }
        XCTAssertThrowsError(try T5Model.load(directory: differs)) { XCTAssertTrue("\($0)".contains("differs from 'shared.weight'"), "\($0)") }
    }
}

/// Inputs the fuzzers (Scripts/hardening/fuzz.sh) found crashing, kept as regression tests.
final class FuzzRegressionTests: XCTestCase {
    /// config: a T5 config whose relative_attention_max_distance (16) does not pass the decoder's
    /// exact buckets (32 / 2) made the bucket formula divide by log(1) = 0 and trap converting
    /// infinity to Int. Refused now, naming the fields.
    func testT5MaxDistanceWithinTheExactBucketsIsRefused() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("fuzz-regressions/config-t5-max-distance.json")))
        XCTAssertThrowsError(try T5Config(json: data, path: "config.json")) { e in
            XCTAssertTrue("\(e)".contains("relative_attention_max_distance (16) must exceed half of relative_attention_num_buckets (32)"), "\(e)")
        }
    }
}
