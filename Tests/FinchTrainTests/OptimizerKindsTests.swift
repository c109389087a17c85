import FinchCore
import FinchFormats
import FinchTestSupport
@testable import FinchTrain
import Foundation
import XCTest

/// Paged AdamW and bitsandbytes' 8-bit AdamW.
final class OptimizerKindsTests: XCTestCase {
    /// Deterministic parameters and gradients.
    static func parameters(_ sizes: [Int], seed: UInt64 = 5) -> [(name: String, value: Buffer<Float>, grad: Buffer<Float>)] {
        var rng = SeededRandom(seed: seed)
        return sizes.enumerated().map { k, n in
            ("p\(k)", Buffer((0..<n).map { _ in rng.nextGaussian() * 0.1 }), Buffer<Float>(count: n))
        }
    }

    static func fillGrads(_ ps: [(name: String, value: Buffer<Float>, grad: Buffer<Float>)], step: Int) {
        var rng = SeededRandom(seed: UInt64(100 + step))
        for p in ps { for i in 0..<p.grad.count { p.grad[i] = rng.nextGaussian() * 0.01 * Float(step) } }
    }

    /// Paged AdamW keeps its moments in file mappings and computes exactly what AdamW computes.
    func testPagedAdamWEqualsAdamW() throws {
        let hyper = AdamW.Hyperparameters(weightDecay: 0.01)
        let a = Self.parameters([5000, 37]), b = Self.parameters([5000, 37])
        let plain = AdamW(parameters: a, hyper: hyper)
        let paged = try AdamW(parameters: b, hyper: hyper, paged: true)
        XCTAssertEqual(paged.name, "paged_adamw")
        let maps = String(decoding: FileHandle(forReadingAtPath: "/proc/self/maps")!.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertGreaterThanOrEqual(maps.components(separatedBy: "finch-paged-").count - 1, 4, "moments should be file mappings")
        for step in 1...4 {
            Self.fillGrads(a, step: step); Self.fillGrads(b, step: step)
            plain.update(lr: 1e-3); paged.update(lr: 1e-3)
        }
        for k in 0..<2 {
            XCTAssertEqual(a[k].value.array, b[k].value.array)
            XCTAssertEqual(plain.expAvgSq[k].array, paged.expAvgSq[k].array)
        }
    }

    /// Against bitsandbytes 0.50.2's AdamW8bit on CPU (Tests/Fixtures/optim/adamw8bit.safetensors,
    /// Scripts/fixtures/make_adamw8bit.py): five steps on a 5000-element tensor (8-bit, a partial
    /// last block), a 4096-element one (8-bit) and a 2048-element one (32-bit). The 8-bit codes and
    /// absmax of both moments are identical at every step; parameters agree to 1-2 ulp (PyTorch
    /// takes √ from MKL, ±1 ulp).
    func testAdamW8bitFollowsBitsAndBytes() throws {
        let file = try SafeTensorsFile(path: Fixtures.path("optim/adamw8bit.safetensors"))
        let names = ["a", "b", "c"]
        let ps = try names.map { n in (name: n, value: Buffer(try file.floats(n + ".init")), grad: Buffer<Float>(count: try file.floats(n + ".init").count)) }
        for (i, n) in names.enumerated() { XCTAssertEqual(ps[i].value.count, [5000, 4096, 2048][i], n) }
        let opt = try AdamW8bit(parameters: ps, hyper: .init(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01))
        XCTAssertEqual(opt.stateBytes, (5000 + 4096) * 2 + (20 + 16) * 2 * 4 + 2048 * 8)
        for step in 1...5 {
            for (i, n) in names.enumerated() {
                let g = try file.floats("\(n).grad.\(step)")
                for j in 0..<g.count { ps[i].grad[j] = g[j] }
            }
            opt.update(lr: 1e-3)
            for (i, n) in names.enumerated() {
                let expected = try file.floats("\(n).param.\(step)")
                let worst = zip(ps[i].value.array, expected).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 3e-8, "\(n) step \(step): parameters")
                switch opt.moments[i] {
                case .quantized(let mq, let ma, let vq, let va):
                    for (codes, absmax, k) in [(mq, ma, "1"), (vq, va, "2")] {
                        let ref = [UInt8](try file.bytes("\(n).state\(k).\(step)"))
                        XCTAssertEqual(codes.array, ref, "\(n) step \(step) state\(k) codes")
                        XCTAssertEqual(absmax.array, try file.floats("\(n).absmax\(k).\(step)"), "\(n) step \(step) absmax\(k)")
                    }
                case .full(let m, let v):
                    for (mine, k) in [(m, "1"), (v, "2")] {
                        let ref = try file.floats("\(n).state\(k).\(step)")
                        let rel = zip(mine.array, ref).map { abs($0 - $1) / max(abs($1), 1e-12) }.max()!
                        XCTAssertLessThan(rel, 1e-5, "\(n) step \(step) state\(k)")
                    }
                }
            }
        }
    }

    /// 8-bit state saves and resumes exactly; paged 8-bit computes the same; a 32-bit checkpoint
    /// is refused by an 8-bit optimizer with a message that says which to use.
    func testAdamW8bitResumesExactlyAndRefusesOtherKinds() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("finch-opt8-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hyper = AdamW.Hyperparameters(weightDecay: 0.01)
        let a = Self.parameters([6000, 100]), b = Self.parameters([6000, 100]), c = Self.parameters([6000, 100])
        let first = try AdamW8bit(parameters: a, hyper: hyper)
        let paged = try AdamW8bit(parameters: c, hyper: hyper, paged: true)
        for step in 1...3 { Self.fillGrads(a, step: step); first.update(lr: 1e-3); Self.fillGrads(c, step: step); paged.update(lr: 1e-3) }
        try first.save(to: dir + "/opt.safetensors")
        for k in 0..<2 { b[k].value.pointer.update(from: a[k].value.pointer, count: a[k].value.count) }
        let resumed = try AdamW8bit(parameters: b, hyper: hyper)
        try resumed.load(from: dir + "/opt.safetensors")
        XCTAssertEqual(resumed.step, 3)
        for step in 4...5 {
            Self.fillGrads(a, step: step); first.update(lr: 1e-3)
            Self.fillGrads(b, step: step); resumed.update(lr: 1e-3)
            Self.fillGrads(c, step: step); paged.update(lr: 1e-3)
        }
        for k in 0..<2 {
            XCTAssertEqual(a[k].value.array, b[k].value.array)
            XCTAssertEqual(a[k].value.array, c[k].value.array)
        }
        let adam = AdamW(parameters: Self.parameters([6000, 100]), hyper: hyper)
        try adam.save(to: dir + "/adam.safetensors")
        XCTAssertThrowsError(try resumed.load(from: dir + "/adam.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("--optimizer adamw"), "\(e)")
        }
    }

    func testOptimizerNamesAndRunFile() throws {
        XCTAssertEqual(OptimizerKind(name: "paged_adamw_32bit"), .pagedAdamW)
        XCTAssertEqual(OptimizerKind(name: "adamw_bnb_8bit"), .adamw8bit)
        XCTAssertEqual(OptimizerKind(name: "paged_adamw_8bit"), .pagedAdamW8bit)
        XCTAssertNil(OptimizerKind(name: "sgd"))
        let yaml = FileManager.default.temporaryDirectory.appendingPathComponent("finch-optim-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: yaml) }
        try "optim: paged_adamw_8bit\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let c = try TrainingConfig.load(yamlAt: yaml, over: TrainingConfig())
        XCTAssertEqual(c.optimizer, .pagedAdamW8bit)
        try "optim: sgd\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TrainingConfig.load(yamlAt: yaml)) { XCTAssertTrue("\($0)".contains("'optimizer' should be one of adamw, paged_adamw, adamw_8bit, paged_adamw_8bit"), "\($0)") }
    }
}
