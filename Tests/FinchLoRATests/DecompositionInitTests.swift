import FinchCore
import FinchFormats
@testable import FinchLoRA
import FinchTestSupport
import XCTest

/// OLoRA and PiSSA initializations against PEFT 0.21's (Tests/Fixtures/lora-init from
/// Scripts/fixtures/make_lora_init_reference.py): every linear of tiny llama and qwen2, r 4, scaling 2.
/// A and B equal PEFT's up to the sign of each rank's pair (LAPACK's in float64 against torch's in
/// float32), B·A and the residual base equal; PiSSA's singular values as torch's float64 ones.
final class DecompositionInitTests: XCTestCase {
    static let rank = 4, scaling = 2.0
    /// Measured (max over both families' 14 linears, relative to the largest value): OLoRA A 2.2e-7, B 7.2e-7,
    /// residual 8.1e-7; PiSSA A 5.0e-5, B 5.4e-5 (torch's float32 SVD of matrices whose singular values lie
    /// close together), residual 1.6e-5, singular values 5.8e-8, W restored 1.1e-7 (both folds in f32). Held to ≤ ~3×; singular
    /// values to the 1e-5.
    static let tolerance: [String: Double] = [
        "olora A": 7e-7, "olora B": 2.2e-6, "olora residual": 2.4e-6,
        "pissa A": 1.5e-4, "pissa B": 1.6e-4, "pissa residual": 5e-5, "pissa singular values": 1e-5, "pissa W restored": 1.6e-7,
    ]

    func testOLoRAAndPiSSAEqualPEFT() throws {
        _ = try Fixtures.required("lora-init")
        var worst: [String: Double] = [:]
        func note(_ key: String, _ v: Double) { worst[key] = max(worst[key] ?? 0, v) }
        for family in ["llama", "qwen2"] {
            let f = try SafeTensorsFile(path: Fixtures.path("lora-init/\(family).safetensors"))
            let modules = f.tensorNames.filter { $0.hasPrefix("olora.") && $0.hasSuffix(".lora_A") }
                .map { String($0.dropFirst("olora.".count).dropLast(".lora_A".count)) }
            XCTAssertEqual(modules.count, 14, family)
            for module in modules {
                let w = try f.floats(module + ".weight"), shape = try XCTUnwrap(f.info(module + ".weight")).shape
                let (o, i) = (shape[0], shape[1]), r = Self.rank
                for method in ["olora", "pissa"] {
                    let got = method == "olora"
                        ? try DecompositionInit.olora(weight: w, out: o, in: i, rank: r, scaling: Self.scaling)
                        : try DecompositionInit.pissa(weight: w, out: o, in: i, rank: r, scaling: Self.scaling)
                    let a = try f.floats("\(method).\(module).lora_A"), b = try f.floats("\(method).\(module).lora_B")
                    let residual = try f.floats("\(method).\(module).residual")
                    // each rank's row of A and column of B: the same up to one sign for both
                    for k in 0..<r {
                        let ga = Array(got.a[(k * i)..<((k + 1) * i)]), wa = Array(a[(k * i)..<((k + 1) * i)])
                        let sign: Float = zip(ga, wa).map { $0 * $1 }.reduce(0, +) < 0 ? -1 : 1
                        note("\(method) A", maxRelativeError(ga.map { $0 * sign }, wa))
                        note("\(method) B", maxRelativeError((0..<o).map { got.b[$0 * r + k] * sign }, (0..<o).map { b[$0 * r + k] }))
                    }
                    note("\(method) residual", maxRelativeError(got.residual, residual))
                    if method == "pissa" {
                        let s = try f.floats("pissa.\(module).singular_values")
                        let (_, sv, _) = try LinearAlgebra.svd(w.map(Double.init), rows: o, columns: i)
                        note("pissa singular values", zip(sv, s).map { abs($0 - Double($1)) / Double($1) }.max()!)
                        // the adapter carries the leading R directions: base + scaling·B·A is W again
                        let back = DecompositionInit.residual(got.residual, a: got.a, b: got.b, out: o, in: i, rank: r, scaling: -Self.scaling)
                        note("pissa W restored", maxRelativeError(back, w))
                    }
                }
            }
        }
        print("[lora init]", worst.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        XCTAssertEqual(Set(worst.keys), Set(Self.tolerance.keys))
        for (key, v) in worst { XCTAssertLessThanOrEqual(v, Self.tolerance[key]!, key) }
    }

    /// PiSSA from K iterations of the randomized SVD (`pissa_niter_K`, torch's `svd_lowrank`) on a weight
    /// whose leading singular values stand apart (σ = 8, 6, 5, 4, then ≤ 1): its s·B·A is the full PiSSA's, closer
    /// with more iterations; base + adapter is W. (On the tiny checkpoints' random weights the spectrum is flat and
    /// any randomized start — PEFT's too — lands on another subspace: no fixture compares them.)
    func testPiSSAFromTheRandomizedSVDFindsTheLeadingDirections() throws {
        let (o, i, r) = (48, 32, Self.rank)
        var g = SeededRandom(seed: 21)
        let u = try LinearAlgebra.qr((0..<(o * i)).map { _ in Double(g.nextGaussian()) }, rows: o, columns: i).q   // [O, I]
        let v = try LinearAlgebra.qr((0..<(i * i)).map { _ in Double(g.nextGaussian()) }, rows: i, columns: i).q   // [I, I]
        let sigma = [8.0, 6, 5, 4] + (4..<i).map { 1 / Double($0 - 2) }
        let w = (0..<(o * i)).map { e in Float((0..<i).map { u[(e / i) * i + $0] * sigma[$0] * v[(e % i) * i + $0] }.reduce(0, +)) }
        func product(_ d: DecompositionInit.Result) -> [Float] {
            (0..<(o * i)).map { e in Float((0..<r).map { Double(d.b[(e / i) * r + $0]) * Double(d.a[$0 * i + e % i]) }.reduce(0, +)) }
        }
        let exact = product(try DecompositionInit.pissa(weight: w, out: o, in: i, rank: r, scaling: Self.scaling))
        var errors: [Double] = []
        for k in [1, 4] {
            var random = SeededRandom(seed: 5)
            let d = try DecompositionInit.pissa(weight: w, out: o, in: i, rank: r, scaling: Self.scaling, iterations: k, random: &random)
            errors.append(maxRelativeError(product(d), exact))
            let back = DecompositionInit.residual(d.residual, a: d.a, b: d.b, out: o, in: i, rank: r, scaling: -Self.scaling)
            XCTAssertLessThan(maxRelativeError(back, w), 1e-6, "base + adapter is W")
        }
        print("[pissa_niter] s·B·A against the full PiSSA after 1 and 4 iterations: \(errors)")
        XCTAssertLessThan(errors[1], errors[0])
        XCTAssertLessThan(errors[1], 1.5e-7)   // measured 4.2e-8
    }
}

/// The factorizations themselves on random matrices, tall and wide.
final class LinearAlgebraTests: XCTestCase {
    func testQRAndSVDReconstructWithOrthonormalFactors() throws {
        var rng = SeededRandom(seed: 3)
        for (m, n) in [(7, 5), (5, 7), (6, 6)] {
            let a = (0..<(m * n)).map { _ in Double(rng.nextGaussian()) }
            let k = min(m, n)
            let (q, r) = try LinearAlgebra.qr(a, rows: m, columns: n)
            for i in 0..<m { for j in 0..<n {
                let v = (0..<k).map { q[i * k + $0] * r[$0 * n + j] }.reduce(0, +)
                XCTAssertEqual(v, a[i * n + j], accuracy: 1e-12)
            } }
            for i in 0..<k { for j in 0..<i { XCTAssertEqual(r[i * n + j], 0) } }   // upper triangular
            let (u, s, vt) = try LinearAlgebra.svd(a, rows: m, columns: n)
            XCTAssertEqual(s, s.sorted(by: >))
            for i in 0..<m { for j in 0..<n {
                let v = (0..<k).map { u[i * k + $0] * s[$0] * vt[$0 * n + j] }.reduce(0, +)
                XCTAssertEqual(v, a[i * n + j], accuracy: 1e-12)
            } }
            for x in 0..<k { for y in 0..<k {   // QᵀQ = UᵀU = VᵀV = I
                let dq = (0..<m).map { q[$0 * k + x] * q[$0 * k + y] }.reduce(0, +)
                let du = (0..<m).map { u[$0 * k + x] * u[$0 * k + y] }.reduce(0, +)
                let dv = (0..<n).map { vt[x * n + $0] * vt[y * n + $0] }.reduce(0, +)
                for d in [dq, du, dv] { XCTAssertEqual(d, x == y ? 1 : 0, accuracy: 1e-12) }
            } }
        }
    }

    func testNonFiniteWeightsAndTooLargeRanksAreRefused() {
        XCTAssertThrowsError(try DecompositionInit.pissa(weight: [1, .nan, 3, 4], out: 2, in: 2, rank: 1, scaling: 1)) {
            XCTAssertTrue("\($0)".contains("NaN"), "\($0)")
        }
        XCTAssertThrowsError(try DecompositionInit.olora(weight: [1, 2, 3, 4], out: 2, in: 2, rank: 3, scaling: 1)) {
            XCTAssertTrue("\($0)".contains("rank 3 exceeds"), "\($0)")
        }
    }
}
