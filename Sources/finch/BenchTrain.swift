import ArgumentParser
import FinchCore
import FinchFormats
import FinchModels
import FinchQuant
import FinchTrain
import Foundation

/// `finch bench train`: training-step throughput and peak memory, as the PyTorch + PEFT baseline measures them.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "LoRA training tokens/s and peak RSS on SmolLM2, SFT or DPO (one JSON line).",
        discussion: """
        Mirrors Scripts/reference/bench_peft.py (PyTorch + PEFT): B×T random token ids (labels = inputs),
        LoRA alpha = 2r, dropout 0.05, AdamW lr 2e-4 without clipping; tokens/s = B·T / the median
        step time over --steps steps after 2 warm-ups, each step a full forward, backward and update
        through the trainer. Run each configuration in a fresh process (peak RSS is per process).
        --method dpo mirrors Scripts/reference/bench_dpo.py (TRL's DPOTrainer + PEFT): B pairs, each a prompt
        of T/2 random tokens and two answers of T/2, so that each answer's sequence has T tokens; the
        reference is the base with the adapters off, dropout off (TRL's defaults); tokens/s counts both
        answers' tokens, 2·B·T per step.
        """)

    @OptionGroup var modelSource: ModelSource
    var model: String? { modelSource.model }
    @Option(name: .long, help: "f32, or bf16 (bf16 weights and products, f32 accumulation and adapters). Omitted: as train does, a quantized GGUF's linears stay in their blocks (products in f32).")
    var dtype: WeightDType?
    @Option(name: .long, help: "all (all-linear) or qv (q_proj, v_proj).")
    var targets: String = "all"
    @Option(name: .long, help: "LoRA rank.")
    var r: Int = 16
    @Option(name: .long, help: "Sequences per step.")
    var batch: Int = 4
    @Option(name: .long, help: "Tokens per sequence.")
    var seq: Int = 256
    @Option(name: .long, help: "Timed steps (after 2 warm-ups).")
    var steps: Int = 6
    @Flag(name: .customLong("gradient-checkpointing"), help: "Recompute each block in backward.")
    var gradientCheckpointing = false
    @Option(name: .customLong("quant-compute"), help: "The base linears' products: exact or int8.")
    var quantCompute: QuantCompute = .exact
    @Flag(name: .long, help: "QLoRA: block linears in NF4 with double quantization, products in --dtype.")
    var qlora = false
    @Option(name: .long, help: "sft (labels = inputs) or dpo (preference pairs).")
    var method: TrainingMethod = .sft

    func run() throws {
        let dt = dtype ?? .f32
        guard method == .sft || method == .dpo else {
            throw ValidationError("--method \(method.rawValue): the training benchmark measures sft and dpo (a step of simpo or orpo is dpo's passes without the reference; kto's is measured by finch train's own lines)")
        }
        guard ["all", "qv"].contains(targets) else { throw ValidationError("--targets must be all or qv") }
        let quant = qlora ? QuantizationConfig(type: .nf4, blocksize: 64, doubleQuant: true, computeDType: dt) : nil
        let lm = try LoadedModel.load(model, dtype: dt, ggufBlocks: dtype == nil, quantization: quant, quantCompute: quantCompute,
                                      backend: modelSource.backend)
        var c = TrainingConfig()
        c.loraR = r; c.loraAlpha = Double(2 * r); c.loraDropout = 0.05
        c.targetModules = targets == "qv" ? lm.model.defaultTargetModules : ["all-linear"]
        c.learningRate = 2e-4; c.lrScheduler = .constant; c.maxGradNorm = 0; c.batchSize = batch
        c.maxSteps = steps + 2; c.gradientCheckpointing = gradientCheckpointing; c.loggingSteps = 0
        var rng = SeededRandom(seed: 1)
        let vocab = UInt64(lm.model.vocabSize)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % vocab) } }
        let trainer: Trainer
        if method == .dpo {
            c.method = .dpo; c.maxLength = nil
            let pairs = (0..<batch).map { _ in PreferencePair(prompt: tokens(seq / 2), chosen: tokens(seq - seq / 2), rejected: tokens(seq - seq / 2)) }
            trainer = try Trainer(model: lm.model, config: c, pairs: pairs)
        } else {
            trainer = try Trainer(model: lm.model, config: c, train: (0..<batch).map { _ in TrainingSequence(tokens: tokens(seq)) })
        }
        let stepTokens = (method == .dpo ? 2 : 1) * batch * seq
        var times: [Double] = []
        var firstLoss = Double.nan
        try trainer.train { event in
            if case let .step(m, _) = event {
                if m.step == 1 { firstLoss = m.loss }
                if m.step > 2 { times.append(m.seconds) }
                if m.step == 2 { Profile.start() }   // the timed steps' kernels
            }
        }
        Profile.stop()
        let med = median(times)
        let profile = profileBreakdown(Profile.totals, seconds: times.reduce(0, +), dtype: dt)
        printResultLine(machineSummary().merging([
            "engine": .string("finch"), "method": .string(method.rawValue), "dtype": .string(dt.rawValue), "weights": .string(lm.model.weightSummary), "targets": .string(targets), "r": .int(r),
            "batch": .int(batch), "seq": .int(seq), "steps": .int(steps),
            "gradient_checkpointing": .bool(gradientCheckpointing), "threads": .int(Parallel.threadCount),
            "qlora": .bool(qlora), "weight_mib": .double((Double(lm.model.weightBytes) / 1_048_576).rounded()),
            "gemm_f32": .string(GEMM.f32Backend.rawValue),
            "tokens_per_s": .double((Double(stepTokens) / med * 10).rounded() / 10),
            "s_per_step": .double((med * 1000).rounded() / 1000), "min_s": .double(((times.min() ?? 0) * 1000).rounded() / 1000),
            "max_s": .double(((times.max() ?? 0) * 1000).rounded() / 1000), "peak_rss_mib": .double(Memory.peakRSSMiB().rounded()),
            "trainable_params": .int(trainer.trainableParameterCount), "first_loss": .double((Double(firstLoss) * 1e4).rounded() / 1e4),
        ]) { _, new in new }.merging(profile) { _, new in new })
    }
}
