import FinchCore
import FinchFormats
import FinchLoRA
@testable import FinchModels
import Foundation
import FinchTestSupport
import XCTest

/// Gradients of the three PEFT reference adapters on SmolLM2 (f32): the loss of `batch_ids`
/// (B = 2, T = 64, labels = inputs) and every trainable tensor's gradient equal PEFT's
/// (Tests/Fixtures/smollm2/peft/<name>/golden.safetensors `<param>.grad`, Scripts/fixtures/make_peft_goldens.py).
/// Measured on an AVX-512 host, 2 threads: gradients within 2.0e-4 relative by norm (worst of 720
/// tensors, a DoRA magnitude), the loss within 8.2e-7 relative; the tolerances are ~3× those:
/// 6e-4 and 2.5e-6.
final class PEFTGradientTests: XCTestCase {
    struct Golden: Decodable { let loss: Double; let batch_ids: [[Int32]] }

    nonisolated(unsafe) static var shared: LoadedModel?
    static func model() throws -> LoadedModel {
        if let m = shared { return m }
        let lm = try LoadedModel.load(try Fixtures.smolLM2(), dtype: .f32)
        shared = lm
        return lm
    }

    func check(_ name: String, checkpointing: Bool = false) throws {
        let lm = try Self.model()
        let dir = try PEFTAdapterTests.dir(name)
        let g = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/golden.json")))
        let ref = try SafeTensorsFile(path: dir + "/golden.safetensors")
        if !lm.model.adapterNames.contains(name) { try lm.model.loadAdapter(directory: dir, name: name) }
        lm.model.setActiveAdapter(name)
        lm.model.zeroGradients()
        let loss = try lm.model.forwardBackward(g.batch_ids.map { TrainingSequence(tokens: $0) }, checkpointing: checkpointing)
        XCTAssertEqual(loss.count, 2 * 63)
        print("[\(name)] loss \(loss.mean) vs PEFT \(g.loss), relative \(abs(loss.mean - g.loss) / g.loss)")
        XCTAssertEqual(loss.mean, g.loss, accuracy: 2.5e-6 * g.loss)
        let params = lm.model.trainableParameters()
        XCTAssertEqual(params.count, ref.tensorNames.count - 1, "one gradient per trainable tensor")
        var worst = (0.0, "")
        for p in params {
            var key = p.name + ".grad"
            if key.hasSuffix("lora_magnitude_vector.grad") { key = p.name + ".weight.grad" }   // PEFT's in-memory name
            guard ref.info(key) != nil else { XCTFail("no PEFT gradient named \(key)"); continue }
            let e = relativeError(p.grad.array, try ref.floats(key))
            if e > worst.0 { worst = (e, key) }
            XCTAssertLessThanOrEqual(e, 6e-4, key)
        }
        print("[\(name)] \(params.count) gradients, worst relative error \(worst.0) (\(worst.1))")
    }

    func testAllLinearLoRAGradientsMatchPEFT() throws { try check("lora_all_linear_r8") }
    func testRSLoRAGradientsMatchPEFT() throws { try check("lora_qv_rslora_r4") }
    func testDoRAGradientsMatchPEFT() throws { try check("dora_qv_r4") }

    /// Recomputing each block in backward leaves the gradients identical, bit for bit.
    func testGradientCheckpointingGivesIdenticalGradients() throws {
        let lm = try Self.model()
        let name = "lora_all_linear_r8"
        try check(name)
        let plain = lm.model.trainableParameters().map { $0.grad.array }
        try check(name, checkpointing: true)
        let recomputed = lm.model.trainableParameters().map { $0.grad.array }
        XCTAssertTrue(plain == recomputed, "checkpointing changed the gradients")
    }
}
