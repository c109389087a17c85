import ArgumentParser
import FinchCore
import FinchFormats
import FinchModels
import FinchQuant
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and memory; prints JSON lines.",
        subcommands: [BenchGenerate.self, BenchTrain.self, BenchGEMM.self, BenchBatch.self])
}


func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Prefill tokens/s for a 512-token prompt, greedy decode tokens/s for 128 tokens at batch 1, peak RSS.",
        discussion: "Mirrors Scripts/reference/bench_infer.py (transformers): prefill median of 3 runs after a warm-up; decode of 128 tokens from a 16-token prompt, median of 2 after a warm-up. Without --dtype, runs f32 and bf16 each in a fresh process.")

    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }
    @Option(name: .long, help: "f32 or bf16; omitted: both, each in its own process.")
    var dtype: WeightDType?
    @Option(name: .long, help: "Prompt length for prefill.")
    var promptTokens: Int = 512
    @Option(name: .long, help: "Quantized inference: quantize the block linears to nf4, fp4 or int8 on load (or give a quantized --model directory).")
    var quantize: QuantMethod?
    @Flag(name: .customLong("double-quant"), help: "With --quantize: double-quantize the 4-bit scales.")
    var doubleQuant = false
    @Option(name: .long, help: "Tokens to decode.")
    var decodeTokens: Int = 128
    @Flag(name: .long, help: "A quantized GGUF's linears kept in their blocks (what generate, serve and train do without --dtype), products in --dtype.")
    var blocks = false
    @Option(name: .customLong("quant-compute"), help: "The base linears' products: exact or int8 (prefill in int8 with per-row activation scales; decoding in integers on a GGUF's blocks or the int8 weights).")
    var quantCompute: QuantCompute = .exact

    func run() throws {
        guard let dtype else {
            for d in WeightDType.allCases {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0]
                    : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0])
                var args = ["bench", "generate", "--dtype", d.rawValue, "--prompt-tokens", "\(promptTokens)",
                            "--decode-tokens", "\(decodeTokens)"]
                if let model { args += ["--model", model] }
                if let quantize { args += ["--quantize", quantize.rawValue] + (doubleQuant ? ["--double-quant"] : []) }
                if blocks { args.append("--blocks") }
                args += ["--quant-compute", quantCompute.rawValue]
                p.arguments = args
                try p.run()
                p.waitUntilExit()
                if p.terminationStatus != 0 { throw ExitCode(p.terminationStatus) }
            }
            return
        }
        let dt = dtype
        var quantization: QuantizationConfig?
        if let quantize {
            quantization = QuantizationConfig(method: quantize, doubleQuant: doubleQuant, computeDType: dt)
        }
        let lm = try LoadedModel.load(model, dtype: dt, ggufBlocks: blocks, quantization: quantization, quantCompute: quantCompute,
                                      backend: modelSource.backend)
        let m = lm.model
        var rng = SeededRandom(seed: 3)
        let ids = (0..<promptTokens).map { _ in 100 + Int(rng.next() % 39_900) }

        var prefill: [Double] = []
        for i in 0..<4 {
            if i == 1 { Profile.start() }   // the timed prefills' kernels
            let t = Date()
            let s = try m.start([ids], capacity: 0)[0]   // an encoder-decoder model encodes here
            _ = try m.step([StepInput(tokens: s.input, state: s.state)], logits: .last)
            prefill.append(Date().timeIntervalSince(t))
        }
        Profile.stop()
        let profile = profileBreakdown(Profile.totals, seconds: prefill.dropFirst().reduce(0, +), dtype: dt, prefix: "prefill_")
        let gen = Generator(lm)
        let opts = GenerationOptions(maxNewTokens: decodeTokens, stopTokenIds: [])
        var decode: [Double] = []
        for _ in 0..<3 {
            let t = Date()
            let r = try gen.generate(promptTokens: [Array(ids.prefix(16))], options: opts)
            precondition(r[0].tokens.count == decodeTokens)
            decode.append(Date().timeIntervalSince(t))
        }
        printResultLine(machineSummary().merging([
            "engine": .string("finch"), "dtype": .string(dt.rawValue), "threads": .int(Parallel.threadCount),
            "block_linears": .string(m.weightSummary),
            "weight_mib": .double((Double(m.weightBytes) / 1_048_576).rounded()),
            "gemm_f32": .string(GEMM.f32Backend.rawValue),
            "prefill\(promptTokens)_tok_s": .double((Double(promptTokens) / median(Array(prefill.dropFirst())) * 10).rounded() / 10),
            "decode\(decodeTokens)_tok_s": .double((Double(decodeTokens) / median(Array(decode.dropFirst())) * 10).rounded() / 10),
            "peak_rss_mib": .double(Memory.peakRSSMiB().rounded()),
        ]) { _, new in new }.merging(profile) { _, new in new })
    }
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GFLOP/s of the matrix-product backends on LLaMA-step shapes (how Finch chose its GEMM).",
        discussion: "y[M,N] = x[M,K]·Wᵀ as a linear layer computes it; best of 7 after 3 warm-ups. f32 through oneDNN and OpenBLAS, bf16 (f32 accumulation) through oneDNN's bf16 kernels, and as a bf16 linear runs it here (GEMM.bf16Compute: native, or widened to f32). Every backend uses every core. The first line names the machine: CPU, features, Finch's kernel path, the OpenBLAS kernels (chosen at load and in use), and the f32 / bf16 / int8 peaks measured here; each shape's line gives GFLOP/s (int8: GOP/s of oneDNN's s8 × s8 → s32 product, with B as a forward and as an input gradient reads it) and the share of that peak.")

    func run() throws {
        let peakF32 = CPUInfo.measuredPeak(bf16: false), peakBF16 = CPUInfo.measuredPeak(bf16: true)
        let peakInt8 = CPUInfo.measuredInt8Peak
        var machine = machineSummary()
        machine["peak_f32_gflops"] = peakF32.map { .double(($0 * 10).rounded() / 10) } ?? .null
        machine["peak_bf16_gflops"] = peakBF16.map { .double(($0 * 10).rounded() / 10) } ?? .null
        machine["peak_int8_gops"] = peakInt8.map { .double(($0 * 10).rounded() / 10) } ?? .null
        machine["isa"] = .sortedObject([
            "dnnl_f32": .string("oneDNN (JIT: its best ISA here)"), "openblas_f32": .string("OpenBLAS " + GEMM.openBLASCore.inUse),
            "dnnl_bf16": .string(peakBF16 == nil ? "oneDNN (no bf16 instructions: emulated)" : "oneDNN avx512_bf16"),
            "dnnl_int8": .string("oneDNN s8 × s8 → s32 (the CPU's integer dot products: \(CPUInfo.int8Dot))")])
        printResultLine(machine)
        let shapes = [(512, 576, 576), (512, 192, 576), (512, 1536, 576), (512, 576, 1536),
                      (1024, 1536, 576), (1024, 576, 1536), (1024, 49152, 576), (2048, 2048, 2048)]
        for (m, n, k) in shapes {
            let a = Buffer<Float>(count: m * k), w = Buffer<Float>(count: n * k), c = Buffer<Float>(count: m * n)
            var rng = SeededRandom(seed: 1)
            for i in 0..<a.count { a[i] = rng.nextUnit() - 0.5 }
            for i in 0..<w.count { w[i] = rng.nextUnit() - 0.5 }
            let ab = Buffer<BF16Bits>(count: m * k), wb = Buffer<BF16Bits>(count: n * k)
            BFloat16.convert(a.pointer, to: ab.pointer, count: m * k)
            BFloat16.convert(w.pointer, to: wb.pointer, count: n * k)
            let ai = Buffer<Int8>(count: m * k), wi = Buffer<Int8>(count: n * k), ci = Buffer<Int32>(count: m * n)
            for i in 0..<(m * k) { ai[i] = Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) }
            for i in 0..<(n * k) { wi[i] = Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) }
            func best(_ f: () throws -> Void) rethrows -> Double {
                for _ in 0..<3 { try f() }
                var b = Double.infinity
                for _ in 0..<7 { let t = Date(); try f(); b = min(b, Date().timeIntervalSince(t)) }
                return b
            }
            let flop = 2.0 * Double(m) * Double(n) * Double(k)
            func gf(_ t: Double) -> JSONValue { .double((flop / t / 1e8).rounded() / 10) }
            let dnnl = best { GEMM.f32(m: m, n: n, k: k, a: a.pointer, lda: k, b: w.pointer, ldb: k, bTransposed: true,
                                      c: c.pointer, ldc: n, accumulate: false, backend: .dnnl) }
            let blas = GEMM.withOpenBLASThreads(Parallel.threadCount) {
                best { GEMM.f32(m: m, n: n, k: k, a: a.pointer, lda: k, b: w.pointer, ldb: k, bTransposed: true,
                                c: c.pointer, ldc: n, accumulate: false, backend: .openblas) }
            }
            let bf = GEMM.withBF16Compute(.native) {
                best { GEMM.bf16(m: m, n: n, k: k, a: ab.pointer, lda: k, b: wb.pointer, ldb: k, bTransposed: true,
                                 c: c.pointer, ldc: n, accumulate: false) }
            }
            // What a bf16 linear runs here (native, or widened to f32 where bf16 arithmetic is slower).
            let bfUsed = best { GEMM.bf16(m: m, n: n, k: k, a: ab.pointer, lda: k, b: wb.pointer, ldb: k, bTransposed: true,
                                         c: c.pointer, ldc: n, accumulate: false) }
            // The same products with B stored [K,N] (as a backward-data product reads a weight).
            let bfKN = GEMM.withBF16Compute(.native) { best { GEMM.bf16(m: m, n: n, k: k, a: ab.pointer, lda: k, b: wb.pointer, ldb: n, bTransposed: false,
                                       c: c.pointer, ldc: n, accumulate: false) } }
            let dnnlKN = best { GEMM.f32(m: m, n: n, k: k, a: a.pointer, lda: k, b: w.pointer, ldb: n, bTransposed: false,
                                        c: c.pointer, ldc: n, accumulate: false, backend: .dnnl) }
            let int8 = try best { try GEMM.int8(m: m, n: n, k: k, a: ai.pointer, lda: k, b: wi.pointer, ldb: k, bTransposed: true,
                                                c: ci.pointer, ldc: n, accumulate: false) }
            // The input gradient's layout: B stored [K, N].
            let int8KN = try best { try GEMM.int8(m: m, n: n, k: k, a: ai.pointer, lda: k, b: wi.pointer, ldb: n, bTransposed: false,
                                                  c: ci.pointer, ldc: n, accumulate: false) }
            func share(_ t: Double, _ peak: Double?) -> JSONValue { peak.map { .double((flop / t / 1e9 / $0 * 1000).rounded() / 1000) } ?? .null }
            printResultLine([
                "m": .int(m), "n": .int(n), "k": .int(k), "threads": .int(Parallel.threadCount), "cpu": .string(CPUInfo.model),
                "dnnl_f32_gflops": gf(dnnl), "openblas_f32_gflops": gf(blas), "dnnl_bf16_gflops": gf(bf),
                "dnnl_f32_of_peak": share(dnnl, peakF32), "openblas_f32_of_peak": share(blas, peakF32),
                "dnnl_bf16_of_peak": share(bf, peakBF16 ?? peakF32),
                "dnnl_f32_b_kn_gflops": gf(dnnlKN), "dnnl_bf16_b_kn_gflops": gf(bfKN),
                "bf16_linear_gflops": gf(bfUsed), "bf16_compute": .string(GEMM.bf16Compute.rawValue),
                "dnnl_int8_gops": gf(int8), "dnnl_int8_b_kn_gops": gf(int8KN), "dnnl_int8_of_peak": share(int8, peakInt8)])
        }
    }
}

/// Shares of the timed work (training steps, or prefills): matrix products, and the GFLOP/s they ran at against this CPU's
/// measured peak for the frozen products' compute type (`gemm_at_peak_share`: the share of a
/// step the products would take at that peak); dequantization, bf16 conversions, attention,
/// and the rest (elementwise kernels, optimizer, data, waits).
func profileBreakdown(_ t: Profile.Totals, seconds: Double, dtype: WeightDType, prefix: String = "") -> [String: JSONValue] {
    guard seconds > 0 else { return [:] }
    let nativeBF16 = dtype == .bf16 && GEMM.bf16Compute == .native
    let peak = CPUInfo.measuredPeak(bf16: nativeBF16) ?? CPUInfo.measuredPeak(bf16: false) ?? 0
    func share(_ x: Double) -> JSONValue { .double((x / seconds * 1000).rounded() / 1000) }
    var out: [String: JSONValue] = [
        prefix + "gemm_gflops": .double(t[.gemm] > 0 ? (t.gemmFlops / t[.gemm] / 1e9).rounded() : 0),
        prefix + "peak_gflops": .double(peak.rounded()), prefix + "peak_kind": .string(nativeBF16 ? "bf16" : "f32"),
        prefix + "gemm_at_peak_share": peak > 0 ? share(t.gemmFlops / (peak * 1e9)) : .int(0),
        prefix + "int8_gops": .double(t[.int8Gemm] > 0 ? (t.int8Ops / t[.int8Gemm] / 1e9).rounded() : 0),
    ]
    var rest = seconds
    for r in Profile.Region.allCases {
        out[prefix + r.name + "_share"] = share(t[r])
        rest -= t[r]
    }
    out[prefix + "other_share"] = share(rest)
    return out
}

/// The machine's facts (`CPUInfo.summary`) as members of a result line.
func machineSummary() -> [String: JSONValue] { CPUInfo.summary.mapValues(JSONValue.string) }

/// Prints one raw result line: a JSON object, members sorted by key, on one line.
func printResultLine(_ members: [String: JSONValue]) {
    print(JSONValue.sortedObject(members).serialized())
}
