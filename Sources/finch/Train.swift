import ArgumentParser
import FinchCore
import FinchEval
import FinchModels
import FinchQuant
import FinchTrain
import Foundation

/// `finch train`: LoRA fine-tuning of a model on a data file; the adapter lands in --output.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a model with LoRA on your data; the PEFT adapter lands in --output.",
        discussion: """
        Settings come from the defaults, then --config run.yaml, then these flags (a flag wins).
        The run directory gets train_config.json, metrics.jsonl, loss.svg, checkpoint-N/ folders
        and, at the end, adapter_config.json + adapter_model.safetensors (PEFT's format).
        Ctrl-C writes a checkpoint and exits; --resume DIR continues a run exactly.
        qlora's flag names are accepted too (--lora_r, --per_device_train_batch_size, ...).
        """)

    @Option(name: .long, help: "YAML file of settings (keys as in train_config.json; qlora/HF names accepted).")
    var config: String?
    @Option(name: [.long, .customLong("model_name_or_path")], help: "Base model: GGUF file, HF directory or known name (default smollm2-135m).")
    var model: String?
    @Option(name: [.long, .customLong("dataset")], help: "Training data file (.json, .jsonl, .txt).")
    var data: String?
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file to use instead of the model's own (for models whose files carry none).")
    var chatTemplate: String?
    @Option(name: [.long, .customLong("dataset_format")], help: "alpaca | input-output | oasst | self-instruct | chat | text (default: detected).")
    var format: DatasetFormat?
    @Option(name: [.customLong("eval-data"), .customLong("eval_dataset")], help: "Held-out data file for evaluation.")
    var evalData: String?
    @Option(name: .customLong("eval-fraction"), help: "Hold out this fraction of --data for evaluation when there is no --eval-data.")
    var evalFraction: Double?
    @Option(name: [.long, .customLong("output_dir")], help: "Run directory (the adapter lands here).")
    var output: String?
    @Option(name: .long, help: "f32, or bf16 (bf16 weights and products with f32 accumulation; f32 adapters).")
    var dtype: WeightDType?
    @Flag(name: .customLong("bf16"), help: "Same as --dtype bf16.")
    var bf16 = false

    @Option(name: [.long, .customLong("quant_type")], help: "QLoRA: quantize the frozen block linears as they load to nf4 or fp4 (4-bit), or int8 (LLM.int8); bitsandbytes' formats, bit for bit.")
    var quantize: QuantMethod?
    @Option(name: [.customLong("int8-threshold"), .customLong("llm_int8_threshold")], help: "With --quantize int8: the outlier threshold (default 6; 0 = no outliers).")
    var int8Threshold: Float?
    @Flag(name: [.customLong("double-quant"), .customLong("double_quant")], help: "QLoRA: double-quantize the 4-bit scales (8-bit, blocks of 256).")
    var doubleQuant = false
    @Option(name: .customLong("quant-blocksize"), help: "QLoRA: values per 4-bit block (32 … 4096, default 64).")
    var quantBlocksize: Int?
    @Option(name: .customLong("compute-dtype"), help: "QLoRA: precision of the 4-bit layers' products, f32 or bf16 (default: --dtype).")
    var computeDType: WeightDType?

    @Option(name: [.customLong("lora-r"), .customLong("lora_r")], help: "LoRA rank.")
    var loraR: Int?
    @Option(name: [.customLong("lora-alpha"), .customLong("lora_alpha")], help: "LoRA alpha (scaling = alpha / r).")
    var loraAlpha: Double?
    @Option(name: [.customLong("lora-dropout"), .customLong("lora_dropout")], help: "Dropout on the adapter's input.")
    var loraDropout: Double?
    @Option(name: [.customLong("target-modules"), .customLong("target_modules")], help: "Comma-separated module names, or all-linear.")
    var targetModules: String?
    @Flag(name: [.customLong("use-rslora"), .customLong("use_rslora")], help: "Scale by alpha / sqrt(r).")
    var useRSLoRA = false
    @Flag(name: [.customLong("use-dora"), .customLong("use_dora")], help: "Weight-decomposed LoRA (DoRA).")
    var useDoRA = false

    @Option(name: [.customLong("learning-rate"), .customLong("learning_rate")], help: "Peak learning rate.")
    var learningRate: Double?
    @Option(name: [.customLong("lr-scheduler"), .customLong("lr_scheduler_type")], help: "constant | linear | cosine.")
    var lrScheduler: String?
    @Option(name: [.customLong("warmup-steps"), .customLong("warmup_steps")], help: "Linear warmup steps.")
    var warmupSteps: Int?
    @Option(name: [.customLong("warmup-ratio"), .customLong("warmup_ratio")], help: "Warmup as a fraction of all steps.")
    var warmupRatio: Double?
    @Option(name: [.customLong("batch-size"), .customLong("per_device_train_batch_size")], help: "Sequences per micro-batch.")
    var batchSize: Int?
    @Option(name: [.customLong("grad-accum"), .customLong("gradient_accumulation_steps")], help: "Micro-batches per optimizer step.")
    var gradAccum: Int?
    @Option(name: [.customLong("max-seq-len"), .customLong("model_max_length")], help: "Longest sequence in tokens.")
    var maxSeqLen: Int?
    @Option(name: [.customLong("source-max-len"), .customLong("source_max_len")], help: "Longest prompt in tokens.")
    var sourceMaxLen: Int?
    @Option(name: [.customLong("target-max-len"), .customLong("target_max_len")], help: "Longest response in tokens.")
    var targetMaxLen: Int?
    @Option(name: [.customLong("max-steps"), .customLong("max_steps")], help: "Optimizer steps (overrides --epochs).")
    var maxSteps: Int?
    @Option(name: [.long, .customLong("num_train_epochs")], help: "Epochs over the data.")
    var epochs: Double?
    @Option(name: [.customLong("max-grad-norm"), .customLong("max_grad_norm")], help: "Clip the gradient norm (0 = off).")
    var maxGradNorm: Double?
    @Option(name: [.customLong("weight-decay"), .customLong("weight_decay")], help: "AdamW weight decay.")
    var weightDecay: Double?
    @Option(name: [.long, .customLong("optim")], help: "adamw, paged_adamw (state in file-backed paged memory), adamw_8bit (bitsandbytes' 8-bit blockwise state) or paged_adamw_8bit.")
    var optimizer: OptimizerKind?
    @Flag(name: [.customLong("dry-run"), .customLong("dry_run")], help: "Load the model and data, print the predicted peak memory by part (with and without gradient checkpointing), and stop without training.")
    var dryRun = false
    @Option(name: [.customLong("eval-steps"), .customLong("eval_steps")], help: "Evaluate every N steps (0 = at the end).")
    var evalSteps: Int?
    @Option(name: [.customLong("save-steps"), .customLong("save_steps")], help: "Checkpoint every N steps (0 = never).")
    var saveSteps: Int?
    @Option(name: [.customLong("save-total-limit"), .customLong("save_total_limit")], help: "Keep only the last N checkpoints.")
    var saveTotalLimit: Int?
    @Option(name: [.customLong("logging-steps"), .customLong("logging_steps")], help: "Write metrics every N steps.")
    var loggingSteps: Int?
    @Option(name: .long, help: "Random seed (adapter init, batch order, dropout).")
    var seed: UInt64?
    @Flag(name: [.customLong("gradient-checkpointing"), .customLong("gradient_checkpointing")], help: "Recompute each block in backward: less memory, same gradients.")
    var gradientCheckpointing = false
    @Flag(name: [.customLong("group-by-length"), .customLong("group_by_length")], help: "Batch sequences of similar length together.")
    var groupByLength = false
    @Flag(name: [.customLong("train-on-source"), .customLong("train_on_source")], help: "Also take the loss on the prompt.")
    var trainOnSource = false
    @Option(name: .long, help: "Continue from a checkpoint directory, or a run directory's latest checkpoint.")
    var resume: String?
    @Flag(name: [.customLong("mmlu-eval"), .customLong("do_mmlu_eval")], help: "MMLU accuracy (qlora's style) at every evaluation, into metrics.jsonl and loss.svg.")
    var mmluEval = false
    @Option(name: .customLong("mmlu-data"), help: "qlora MMLU file for --mmlu-eval (e.g. qlora's data/mmlu/zero_shot_mmlu_val.json).")
    var mmluData: String?
    @Option(name: [.customLong("max-mmlu-samples"), .customLong("max_mmlu_samples")], help: "Score only the first N MMLU items.")
    var maxMMLUSamples: Int?

    /// Defaults ← the resumed run's settings ← --config ← flags.
    func resolvedConfig() throws -> TrainingConfig {
        var c = TrainingConfig()
        if let resume {
            c = try Checkpoint.readState(try Checkpoint.resolve(resume)).config
        }
        if let config { c = try TrainingConfig.load(yamlAt: config, over: c) }
        func set<T>(_ v: T?, _ kp: WritableKeyPath<TrainingConfig, T>) { if let v { c[keyPath: kp] = v } }
        func setOpt<T>(_ v: T?, _ kp: WritableKeyPath<TrainingConfig, T?>) { if let v { c[keyPath: kp] = v } }
        setOpt(model, \.model); setOpt(data, \.data); setOpt(chatTemplate, \.chatTemplate); setOpt(format, \.format); setOpt(evalData, \.evalData)
        if mmluEval { c.mmluEval = true }
        setOpt(mmluData, \.mmluData); setOpt(maxMMLUSamples, \.maxMMLUSamples)
        set(evalFraction, \.evalFraction); setOpt(output, \.output); set(dtype, \.dtype)
        if bf16 { c.dtype = .bf16 }
        setOpt(quantize, \.quantize); set(int8Threshold, \.int8Threshold); set(quantBlocksize, \.quantBlocksize); setOpt(computeDType, \.computeDType)
        if doubleQuant { c.doubleQuant = true }
        set(loraR, \.loraR); set(loraAlpha, \.loraAlpha); set(loraDropout, \.loraDropout)
        if let t = targetModules { c.targetModules = t.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if useRSLoRA { c.useRSLoRA = true }
        if useDoRA { c.useDoRA = true }
        set(learningRate, \.learningRate)
        if let s = lrScheduler {
            guard let k = LRSchedule.Kind(rawValue: s) ?? (s == "constant_with_warmup" ? .constant : nil) else {
                throw ValidationError("--lr-scheduler must be constant, linear or cosine (got '\(s)')")
            }
            c.lrScheduler = k
        }
        set(warmupSteps, \.warmupSteps); set(warmupRatio, \.warmupRatio); set(batchSize, \.batchSize)
        set(gradAccum, \.gradAccum); set(maxSeqLen, \.maxSeqLen); setOpt(sourceMaxLen, \.sourceMaxLen)
        setOpt(targetMaxLen, \.targetMaxLen); setOpt(maxSteps, \.maxSteps); set(epochs, \.epochs)
        if epochs != nil && maxSteps == nil { c.maxSteps = nil }
        set(maxGradNorm, \.maxGradNorm); set(weightDecay, \.weightDecay); set(optimizer, \.optimizer); set(evalSteps, \.evalSteps)
        set(saveSteps, \.saveSteps); setOpt(saveTotalLimit, \.saveTotalLimit); set(loggingSteps, \.loggingSteps)
        set(seed, \.seed)
        if gradientCheckpointing { c.gradientCheckpointing = true }
        if groupByLength { c.groupByLength = true }
        if trainOnSource { c.trainOnSource = true }
        try c.validate()
        return c
    }

    @Flag(name: .long, help: "Data-parallel training over MPI (implied when started by mpirun): every rank takes its share of each global batch of world × batch × grad-accum; rank 0 writes the run.")
    var distributed = false

    func run() throws {
        let world: MPIWorld? = distributed || MPIWorld.launchedByMPIRun ? try MPIWorld.start() : nil
        defer { world?.finish() }
        do { try train(world: world) } catch {
            guard let world, world.size > 1 else { throw error }
            // One rank cannot go on: stop them all rather than leave them waiting in a sum.
            stderrPrint("rank \(world.rank) of \(world.size): \(error)")
            world.abort(code: 1)
        }
    }

    func train(world: MPIWorld?) throws {
        let rank = world?.rank ?? 0
        // Rank 0 speaks for the run; the other ranks stay quiet.
        @Sendable func stderrPrint(_ s: String) { if rank == 0 { FileHandle.standardError.write(Data((s + "\n").utf8)) } }
        func print(_ s: String) { if rank == 0 { Swift.print(s) } }
        if let world, rank == 0 {
            stderrPrint("distributed: \(world.size) ranks; global batch \(world.size) × batch × grad_accum")
        }
        // Multi-MiB buffers (activations, workspaces) in their own mappings: freed memory leaves
        // the process at once, so the peak is what is live (and what --dry-run predicts).
        Memory.mapLargeAllocations(threshold: 1 << 20)
        let c = try resolvedConfig()
        guard let dataPath = c.data else { throw ValidationError("--data FILE is required (or `data:` in --config)") }
        guard let out = c.output ?? (dryRun ? "" : nil) else { throw ValidationError("--output DIR is required (or `output:` in --config)") }
        if resume == nil && !dryRun && FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors") {
            throw TrainError.outputExists(path: out)
        }
        let run = try TrainingRun.prepare(config: c)
        let lm = run.model, loaded = run.dataset, train = run.train, eval = run.eval
        let model = run.trainable
        stderrPrint(String(format: "loaded %@ (%@, %@, %@%@) in %.1f s, weights %.0f MiB", run.modelPath, model.architecture,
                           lm.model.kind.rawValue, c.dtype.rawValue,
                           c.quantization.map { "; block linears " + $0.summary }
                               ?? (model.isQuantized ? "; block linears stored in 4 bits" : ""), run.loadSeconds,
                           Double(model.weightBytes) / 1_048_576))
        stderrPrint("data \(dataPath): \(loaded.format.rawValue), \(loaded.examples.count) examples, \(loaded.tokenCount) tokens (\(loaded.lossTokenCount) with loss)"
                    + (loaded.droppedCount > 0 ? ", \(loaded.droppedCount) dropped (no response tokens left after truncation)" : "")
                    + (loaded.truncatedCount > 0 ? ", \(loaded.truncatedCount) truncated" : ""))
        if case .heldOut = run.evalSource { stderrPrint("held out \(eval.count) examples for evaluation") }
        for caveat in model.trainingCaveats { stderrPrint("note: \(caveat)") }

        if dryRun {
            // Warm the math libraries up (threads, GEMM buffers) with a short pass, as the run's first step will.
            _ = try model.evaluate(Array(train.prefix(1)))
            model.releaseTrainingMemory()
            let resident = Memory.currentRSSBytes(releasingFreeMemory: true) ?? 0
            let trainer = try run.trainer(runDirectory: nil)
            print("dry run: \(trainer.trainableParameterCount) trainable parameters, optimizer \(trainer.optimizer.name), "
                  + "\(trainer.totalSteps) steps of \(c.batchSize) × \(c.gradAccum) sequences")
            print(String(format: "loading: predicted peak %.1f MiB, measured in this dry run %.1f MiB (%.1f MiB before loading)",
                         Double(run.predictedLoadPeak) / 1_048_576, Double(run.measuredLoadPeak) / 1_048_576,
                         Double(run.residentBeforeLoading) / 1_048_576))
            for ckpt in [c.gradientCheckpointing, !c.gradientCheckpointing] {
                let plan = trainer.memoryPlan(residentAfterLoading: resident, checkpointing: ckpt)
                print("predicted peak memory, gradient checkpointing \(ckpt ? "on" : "off")\(ckpt == c.gradientCheckpointing ? " (this run)" : ""):")
                print(plan.summary)
                print(String(format: "      run peak (loading or training) %8.1f MiB", Double(max(plan.total, run.predictedLoadPeak)) / 1_048_576))
            }
            return
        }
        let trainer = try run.trainer(runDirectory: rank == 0 ? out : nil, world: (world?.size ?? 1) > 1 ? world : nil)
        if rank == 0, let mmlu = try MMLUTrainingEvaluator.forRun(c, model: lm) {
            trainer.evaluators.append(mmlu)
            stderrPrint("MMLU (qlora style) at every evaluation: \(mmlu.items.count) items of \(c.mmluData ?? "")")
        }
        stderrPrint(String(format: "optimizer %@, state %.1f MiB", trainer.optimizer.name,
                           Double(trainer.optimizer.stateBytes) / 1_048_576))
        let bar = ProgressBar()
        let interrupts = InterruptHandler { [trainer] count in
            if count == 1 {
                stderrPrint("\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once)")
                trainer.requestStop()
            } else {
                Foundation.exit(130)
            }
        }
        defer { interrupts.cancel() }
        let summary = try trainer.train(resumeFrom: resume) { if rank == 0 { bar.handle($0) } }
        bar.finish()
        if summary.interrupted {
            print("stopped at step \(summary.steps)/\(summary.totalSteps); continue with: finch train --resume \(out)")
        } else {
            print("adapter written to \(out) (PEFT format); try it: finch generate --adapter \(out) \"...\"")
        }
    }
}

/// A terminal progress line (on stderr): step, loss, learning rate, tokens/s, ETA; plain lines
/// when stderr is not a terminal.
final class ProgressBar: @unchecked Sendable {
    let tty = isatty(2) != 0
    var startStep = 0
    var started = Date()

    func handle(_ event: TrainerEvent) {
        switch event {
        case let .started(total, start, train, eval, params):
            startStep = start; started = Date()
            stderrPrint("training \(params) parameters on \(train) examples (\(eval) for evaluation), \(total) steps"
                        + (start > 0 ? ", resuming at step \(start)" : ""))
        case let .step(m, total):
            let done = m.step - startStep
            let eta = done > 0 ? Date().timeIntervalSince(started) / Double(done) * Double(total - m.step) : 0
            let width = 24, filled = total > 0 ? width * m.step / total : 0
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = String(format: "%@ %d/%d  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %@", bar, m.step, total,
                              m.loss, m.learningRate, m.gradNorm, m.tokensPerSecond, Self.duration(eta))
            if tty { FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8)) } else { stderrPrint(line) }
        case .evaluation(let e):
            clearLine()
            var parts: [String] = []
            if let l = e.loss, let p = e.perplexity { parts.append(String(format: "eval loss %.4f, perplexity %.2f (%d tokens)", l, p, e.tokens)) }
            if let a = e.scores["mmlu_eval_accuracy"] {
                parts.append(String(format: "MMLU accuracy %.2f%% (subject mean; items %.2f%%), mmlu_loss %.4f", 100 * a,
                                    100 * (e.scores["mmlu_eval_item_accuracy"] ?? .nan), e.scores["mmlu_loss"] ?? .nan))
            }
            stderrPrint("step \(e.step): " + parts.joined(separator: "; "))
        case let .checkpoint(step, path):
            clearLine()
            stderrPrint("step \(step): checkpoint \(path)")
        case .finished(let s):
            clearLine()
            let last = s.losses.last.map { String(format: "%.4f", $0) } ?? "-"
            stderrPrint(String(format: "%d steps in %@, last loss %@", s.steps, Self.duration(s.seconds), last))
        }
    }

    func clearLine() { if tty { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) } }
    func finish() { clearLine() }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// Ctrl-C (SIGINT) delivered on a dispatch queue instead of killing the process; the handler
/// gets how many times it was pressed.
final class InterruptHandler: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private var count = 0

    init(_ handler: @escaping @Sendable (Int) -> Void) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: DispatchQueue(label: "finch.sigint"))
        source.setEventHandler { [unowned self] in
            self.count += 1
            handler(self.count)
        }
        source.resume()
    }

    func cancel() { source.cancel(); signal(SIGINT, SIG_DFL) }
}
