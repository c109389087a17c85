import ArgumentParser
import CFinchKernels
import FinchCore
import FinchModels
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and memory; prints JSON lines.",
        subcommands: [BenchGenerate.self])
}

/// Peak resident set size of this process so far, in MiB.
func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Prefill tokens/s for a 512-token prompt, greedy decode tokens/s for 128 tokens at batch 1, peak RSS.",
        discussion: "Mirrors ../shared/reference/scripts/bench_infer.py: prefill median of 3 runs after a warm-up; decode of 128 tokens from a 16-token prompt, median of 2 after a warm-up. Without --dtype, runs f32 and bf16 each in a fresh process.")

    @Option(name: .long, help: "A GGUF file, a Hugging Face model directory, or a known name.")
    var model: String?
    @Option(name: .long, help: "f32 or bf16; omitted: both, each in its own process.")
    var dtype: String?
    @Option(name: .long, help: "Prompt length for prefill.")
    var promptTokens: Int = 512
    @Option(name: .long, help: "Tokens to decode.")
    var decodeTokens: Int = 128

    func run() throws {
        guard let dtype else {
            for d in WeightDType.allCases {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0]
                    : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0])
                var args = ["bench", "generate", "--dtype", d.rawValue, "--prompt-tokens", "\(promptTokens)",
                            "--decode-tokens", "\(decodeTokens)"]
                if let model { args += ["--model", model] }
                p.arguments = args
                try p.run()
                p.waitUntilExit()
                if p.terminationStatus != 0 { throw ExitCode(p.terminationStatus) }
            }
            return
        }
        guard let dt = WeightDType(rawValue: dtype) else { throw ValidationError("--dtype must be f32 or bf16") }
        let lm = try LanguageModel.load(model, dtype: dt)
        let m = lm.model
        var rng = SeededRandom(seed: 3)
        let ids = (0..<promptTokens).map { _ in 100 + Int(rng.next() % 39_900) }

        var prefill: [Double] = []
        for _ in 0..<4 {
            let cache = m.makeCache(capacity: promptTokens)
            let t = Date()
            _ = try m.forward([LlamaSequenceInput(tokens: ids, cache: cache)], logits: .last)
            prefill.append(Date().timeIntervalSince(t))
        }
        let gen = Generator(lm)
        let opts = GenerationOptions(maxNewTokens: decodeTokens, stopTokenIds: [])
        var decode: [Double] = []
        for _ in 0..<3 {
            let t = Date()
            let r = try gen.generate(promptTokens: [Array(ids.prefix(16))], options: opts)
            precondition(r[0].tokens.count == decodeTokens)
            decode.append(Date().timeIntervalSince(t))
        }
        let out: [String: Any] = [
            "engine": "finch", "dtype": dt.rawValue, "threads": Parallel.threadCount,
            "kernels": String(cString: finch_kernel_path()), "gemm_f32": GEMM.f32Backend.rawValue,
            "prefill\(promptTokens)_tok_s": (Double(promptTokens) / median(Array(prefill.dropFirst())) * 10).rounded() / 10,
            "decode\(decodeTokens)_tok_s": (Double(decodeTokens) / median(Array(decode.dropFirst())) * 10).rounded() / 10,
            "peak_rss_mib": peakRSSMiB().rounded(),
        ]
        let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
