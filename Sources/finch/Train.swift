import ArgumentParser
import FinchCore
import FinchEval
import FinchModels
import FinchQuant
import FinchServe
import FinchTrain
import Foundation
import Logging

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
    // Every setting's flag names and help come from its entry in TrainingConfig.settings (by key
    // path); the option declares only that the command takes it, and `overrides` binds it to the setting.
    @Option(name: .setting(\.model), help: .setting(\.model)) var model: String?
    @Option(name: .setting(\.ggufFile), help: .setting(\.ggufFile)) var ggufFile: String?
    @Option(name: .setting(\.data), help: .setting(\.data)) var data: String?
    @Option(name: .setting(\.chatTemplate), help: .setting(\.chatTemplate)) var chatTemplate: String?
    @Option(name: .setting(\.format), help: .setting(\.format)) var format: DatasetFormat?
    @Option(name: .setting(\.evalData), help: .setting(\.evalData)) var evalData: String?
    @Option(name: .setting(\.evalFraction), help: .setting(\.evalFraction)) var evalFraction: Double?
    @Option(name: .setting(\.output), help: .setting(\.output)) var output: String?
    @Option(name: .setting(\.dtype), help: .setting(\.dtype)) var dtype: WeightDType?
    @Option(name: .setting(\.backend), help: .setting(\.backend)) var backend: BackendKind?
    @Option(name: .setting(\.quantCompute), help: .setting(\.quantCompute)) var quantCompute: QuantCompute?
    @Flag(name: .customLong("bf16"), help: "Same as --dtype bf16.")
    var bf16 = false

    @Option(name: .setting(\.quantize), help: .setting(\.quantize)) var quantize: QuantMethod?
    @Option(name: .setting(\.int8Threshold), help: .setting(\.int8Threshold)) var int8Threshold: Float?
    @Flag(name: .setting(\.doubleQuant), help: .setting(\.doubleQuant)) var doubleQuant = false
    @Option(name: .setting(\.quantBlocksize), help: .setting(\.quantBlocksize)) var quantBlocksize: Int?
    @Option(name: .setting(\.computeDType), help: .setting(\.computeDType)) var computeDType: WeightDType?

    @Option(name: .setting(\.method), help: .setting(\.method)) var method: TrainingMethod?
    @Option(name: .setting(\.beta), help: .setting(\.beta)) var beta: Double?
    @Option(name: .setting(\.lossType), help: .setting(\.lossType)) var lossType: String?
    @Option(name: .setting(\.desirableWeight), help: .setting(\.desirableWeight)) var desirableWeight: Double?
    @Option(name: .setting(\.undesirableWeight), help: .setting(\.undesirableWeight)) var undesirableWeight: Double?
    @Option(name: .setting(\.labelSmoothing), help: .setting(\.labelSmoothing)) var labelSmoothing: Double?
    @Option(name: .setting(\.discopopTau), help: .setting(\.discopopTau)) var discopopTau: Double?
    @Option(name: .setting(\.simpoGamma), help: .setting(\.simpoGamma)) var simpoGamma: Double?
    @Option(name: .setting(\.cpoAlpha), help: .setting(\.cpoAlpha)) var cpoAlpha: Double?
    @Flag(name: .setting(\.referenceFree), help: .setting(\.referenceFree)) var referenceFree = false
    @Flag(name: .setting(\.precomputeRefLogProbs), help: .setting(\.precomputeRefLogProbs)) var precomputeRefLogProbs = false
    @Option(name: .setting(\.refAdapter), help: .setting(\.refAdapter)) var refAdapter: String?
    @Option(name: .setting(\.maxLength), help: .setting(\.maxLength)) var maxLength: Int?
    @Option(name: .setting(\.truncationMode), help: .setting(\.truncationMode)) var truncationMode: TruncationMode?
    @Option(name: .setting(\.maxCompletionLength), help: .setting(\.maxCompletionLength)) var maxCompletionLength: Int?

    @Option(name: .setting(\.loraR), help: .setting(\.loraR)) var loraR: Int?
    @Option(name: .setting(\.loraAlpha), help: .setting(\.loraAlpha)) var loraAlpha: Double?
    @Option(name: .setting(\.loraDropout), help: .setting(\.loraDropout)) var loraDropout: Double?
    @Option(name: .setting(\.targetModules), help: .setting(\.targetModules)) var targetModules: String?
    @Option(name: .setting(\.modulesToSave), help: .setting(\.modulesToSave)) var modulesToSave: String?
    @Option(name: .setting(\.trainableTokenIndices), help: .setting(\.trainableTokenIndices)) var trainableTokenIndices: String?
    @Option(name: .setting(\.addSpecialTokens), help: .setting(\.addSpecialTokens)) var addSpecialTokens: String?
    @Option(name: .setting(\.addTokens), help: .setting(\.addTokens)) var addTokens: String?
    @Flag(name: .setting(\.addChatTemplateTokens), help: .setting(\.addChatTemplateTokens)) var noChatTemplateTokens = false
    @Option(name: .setting(\.eosToken), help: .setting(\.eosToken)) var eosToken: String?
    @Flag(name: .setting(\.useRSLoRA), help: .setting(\.useRSLoRA)) var useRSLoRA = false
    @Flag(name: .setting(\.useDoRA), help: .setting(\.useDoRA)) var useDoRA = false
    @Option(name: .setting(\.initLoRAWeights), help: .setting(\.initLoRAWeights)) var initLoRAWeights: LoRAInit?
    @Option(name: .setting(\.loftqIter), help: .setting(\.loftqIter)) var loftqIter: Int?
    @Option(name: .setting(\.evaRho), help: .setting(\.evaRho)) var evaRho: Double?
    @Option(name: .setting(\.evaTau), help: .setting(\.evaTau)) var evaTau: Double?

    @Option(name: .setting(\.learningRate), help: .setting(\.learningRate)) var learningRate: Double?
    @Option(name: .setting(\.lrScheduler), help: .setting(\.lrScheduler)) var lrScheduler: LRSchedule.Kind?
    @Option(name: .setting(\.warmupSteps), help: .setting(\.warmupSteps)) var warmupSteps: Int?
    @Option(name: .setting(\.warmupRatio), help: .setting(\.warmupRatio)) var warmupRatio: Double?
    @Option(name: .setting(\.batchSize), help: .setting(\.batchSize)) var batchSize: Int?
    @Option(name: .setting(\.gradAccum), help: .setting(\.gradAccum)) var gradAccum: Int?
    @Option(name: .setting(\.maxSeqLen), help: .setting(\.maxSeqLen)) var maxSeqLen: Int?
    @Option(name: .setting(\.sourceMaxLen), help: .setting(\.sourceMaxLen)) var sourceMaxLen: Int?
    @Option(name: .setting(\.targetMaxLen), help: .setting(\.targetMaxLen)) var targetMaxLen: Int?
    @Option(name: .setting(\.maxSteps), help: .setting(\.maxSteps)) var maxSteps: Int?
    @Option(name: .setting(\.epochs), help: .setting(\.epochs)) var epochs: Double?
    @Option(name: .setting(\.maxGradNorm), help: .setting(\.maxGradNorm)) var maxGradNorm: Double?
    @Option(name: .setting(\.weightDecay), help: .setting(\.weightDecay)) var weightDecay: Double?
    @Option(name: .setting(\.loraPlusLRRatio), help: .setting(\.loraPlusLRRatio)) var loraPlusLRRatio: Double?
    @Option(name: .setting(\.loraPlusLREmbedding), help: .setting(\.loraPlusLREmbedding)) var loraPlusLREmbedding: Double?
    @Option(name: .setting(\.loraPlusWeightDecay), help: .setting(\.loraPlusWeightDecay)) var loraPlusWeightDecay: Double?
    @Option(name: .setting(\.optimizer), help: .setting(\.optimizer)) var optimizer: OptimizerKind?
    @Flag(name: [.customLong("dry-run"), .customLong("dry_run")], help: "Load the model and data, print the predicted peak memory by part (with and without gradient checkpointing), and stop without training.")
    var dryRun = false
    @Option(name: .setting(\.evalSteps), help: .setting(\.evalSteps)) var evalSteps: Int?
    @Option(name: .setting(\.saveSteps), help: .setting(\.saveSteps)) var saveSteps: Int?
    @Option(name: .setting(\.saveTotalLimit), help: .setting(\.saveTotalLimit)) var saveTotalLimit: Int?
    @Option(name: .setting(\.reportTo), help: .setting(\.reportTo)) var reportTo: String?
    @Option(name: .setting(\.samplePrompts), help: .setting(\.samplePrompts)) var samplePrompts: String?
    @Option(name: .setting(\.sampleMaxTokens), help: .setting(\.sampleMaxTokens)) var sampleMaxTokens: Int?
    @Option(name: .setting(\.loggingSteps), help: .setting(\.loggingSteps)) var loggingSteps: Int?
    @Option(name: .setting(\.seed), help: .setting(\.seed)) var seed: UInt64?
    @Flag(name: .setting(\.gradientCheckpointing), help: .setting(\.gradientCheckpointing)) var gradientCheckpointing = false
    @Flag(name: .setting(\.groupByLength), help: .setting(\.groupByLength)) var groupByLength = false
    @Flag(name: .setting(\.trainOnSource), help: .setting(\.trainOnSource)) var trainOnSource = false
    @Option(name: .long, help: "Continue from a checkpoint directory, or a run directory's latest checkpoint.")
    var resume: String?
    @Flag(name: .long, help: "Serve a live page of the run on 127.0.0.1 (--ui-port): loss, eval loss, learning rate, gradient norm, throughput, memory, progress and ETA, the settings, the --sample-prompts answers. It stays up after the run until Ctrl-C.")
    var ui = false
    @Option(name: .customLong("ui-port"), help: "The live page's port (default 6070).")
    var uiPort = 6070
    @Flag(name: .setting(\.mmluEval), help: .setting(\.mmluEval)) var mmluEval = false
    @Option(name: .setting(\.mmluData), help: .setting(\.mmluData)) var mmluData: String?
    @Option(name: .setting(\.maxMMLUSamples), help: .setting(\.maxMMLUSamples)) var maxMMLUSamples: Int?

    /// The flags given, each bound to its setting. A flag (a Bool option) only ever turns its setting
    /// on; `--epochs` without `--max-steps` also clears a max_steps from --config or the resumed run.
    var overrides: [SettingOverride] {
        [.value(\.model, model), .value(\.ggufFile, ggufFile), .value(\.data, data), .value(\.chatTemplate, chatTemplate), .value(\.format, format),
         .value(\.evalData, evalData), .value(\.evalFraction, evalFraction), .value(\.output, output), .value(\.dtype, dtype), .value(\.backend, backend),
         .value(\.quantCompute, quantCompute),
         .flag(\.dtype, bf16, means: .bf16),
         .value(\.quantize, quantize), .value(\.int8Threshold, int8Threshold), .flag(\.doubleQuant, doubleQuant),
         .value(\.quantBlocksize, quantBlocksize), .value(\.computeDType, computeDType),
         .value(\.method, method), .value(\.beta, beta), .value(\.lossType, lossType), .value(\.desirableWeight, desirableWeight),
         .value(\.undesirableWeight, undesirableWeight), .value(\.labelSmoothing, labelSmoothing),
         .value(\.discopopTau, discopopTau), .value(\.simpoGamma, simpoGamma), .value(\.cpoAlpha, cpoAlpha),
         .flag(\.referenceFree, referenceFree), .flag(\.precomputeRefLogProbs, precomputeRefLogProbs), .value(\.refAdapter, refAdapter),
         .value(\.maxLength, maxLength), .value(\.truncationMode, truncationMode), .value(\.maxCompletionLength, maxCompletionLength),
         .value(\.loraR, loraR), .value(\.loraAlpha, loraAlpha), .value(\.loraDropout, loraDropout),
         .text(\.targetModules, targetModules), .text(\.modulesToSave, modulesToSave), .text(\.trainableTokenIndices, trainableTokenIndices),
         .text(\.addSpecialTokens, addSpecialTokens), .text(\.addTokens, addTokens), .flag(\.addChatTemplateTokens, noChatTemplateTokens, means: false), .value(\.eosToken, eosToken), .flag(\.useRSLoRA, useRSLoRA), .flag(\.useDoRA, useDoRA),
         .value(\.initLoRAWeights, initLoRAWeights), .value(\.loftqIter, loftqIter), .value(\.evaRho, evaRho), .value(\.evaTau, evaTau),
         .value(\.learningRate, learningRate), .value(\.lrScheduler, lrScheduler), .value(\.warmupSteps, warmupSteps),
         .value(\.warmupRatio, warmupRatio), .value(\.batchSize, batchSize), .value(\.gradAccum, gradAccum),
         .value(\.maxSeqLen, maxSeqLen), .value(\.sourceMaxLen, sourceMaxLen), .value(\.targetMaxLen, targetMaxLen),
         .value(\.epochs, epochs), .clear(\.maxSteps, when: epochs != nil && maxSteps == nil), .value(\.maxSteps, maxSteps),
         .value(\.maxGradNorm, maxGradNorm), .value(\.weightDecay, weightDecay), .value(\.loraPlusLRRatio, loraPlusLRRatio),
         .value(\.loraPlusLREmbedding, loraPlusLREmbedding), .value(\.loraPlusWeightDecay, loraPlusWeightDecay), .value(\.optimizer, optimizer),
         .value(\.evalSteps, evalSteps), .value(\.saveSteps, saveSteps), .value(\.saveTotalLimit, saveTotalLimit),
         .text(\.reportTo, reportTo), .value(\.samplePrompts, samplePrompts), .value(\.sampleMaxTokens, sampleMaxTokens), .value(\.loggingSteps, loggingSteps), .value(\.seed, seed), .flag(\.gradientCheckpointing, gradientCheckpointing),
         .flag(\.groupByLength, groupByLength), .flag(\.trainOnSource, trainOnSource),
         .flag(\.mmluEval, mmluEval), .value(\.mmluData, mmluData), .value(\.maxMMLUSamples, maxMMLUSamples)]
    }

    /// Defaults ← the resumed run's settings ← --config ← flags.
    func resolvedConfig() throws -> TrainingConfig {
        try TrainingConfig.resolve(resumed: try resume.map { try Checkpoint.readState(try Checkpoint.resolve($0)).config },
                                   runFile: config, overrides: overrides)
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
        stderrPrint(String(format: "loaded %@ (%@, %@, block linears %@) in %.1f s, weights %.0f MiB", run.modelPath, model.architecture,
                           lm.model.kind.rawValue, lm.model.weightSummary, run.loadSeconds, Double(model.weightBytes) / 1_048_576))
        if let loaded {
            stderrPrint("data \(dataPath): \(loaded.format.rawValue), \(loaded.examples.count) examples, \(loaded.tokenCount) tokens (\(loaded.lossTokenCount) with loss)"
                        + (loaded.droppedCount > 0 ? ", \(loaded.droppedCount) dropped (no response tokens left after truncation)" : "")
                        + (loaded.truncatedCount > 0 ? ", \(loaded.truncatedCount) truncated" : ""))
        }
        if let p = run.preferences {
            let what = c.method == .kto
                ? "\(p.unpaired.count) examples (\(p.unpaired.filter(\.desirable).count) desirable, \(p.unpaired.filter { !$0.desirable }.count) undesirable)"
                : "\(p.pairs.count) pairs"
            stderrPrint("data \(dataPath): \(c.method.rawValue) preference \(c.method == .kto ? "examples" : "pairs") (\(p.conversational ? "conversations through the chat template" : "text")), \(what)"
                        + (p.droppedCount > 0 ? ", \(p.droppedCount) dropped (the prompt fills max_length)" : "")
                        + (p.truncatedCount > 0 ? ", \(p.truncatedCount) cut to max_length \(c.maxLength ?? 0)" : ""))
            stderrPrint(c.method == .simpo || c.method == .orpo ? "reference: none (\(c.method.rawValue))" : c.referenceFree ? "reference: none (reference_free)"
                        : "reference: \(c.refAdapter.map { "the adapter \($0), frozen" } ?? "the base model (adapters off)")"
                            + (c.precomputeRefLogProbs ? ", log-probabilities computed before training" : ", one pass per micro-batch"))
        }
        if case .heldOut = run.evalSource { stderrPrint("held out \(run.preferences == nil ? eval.count : run.evalExamples.count) \(run.preferences == nil || c.method == .kto ? "examples" : "pairs") for evaluation") }
        for caveat in model.trainingCaveats { stderrPrint("note: \(caveat)") }
        if !run.addedTokens.isEmpty {
            stderrPrint("added tokens: " + run.addedTokens.map { "\($0.token) (\($0.id))" }.joined(separator: ", ")
                        + (run.vocabularyBefore.map { "; vocabulary \($0) → \(model.vocabSize) (new rows around the mean, as resize_token_embeddings)" } ?? ""))
            let trained = Set(c.trainableTokenIndices ?? [])
            if c.modulesToSave.isEmpty && !run.addedTokens.allSatisfy({ trained.contains($0.id) }) {
                stderrPrint("note: the added tokens' rows are not trained: add --modules-to-save embed_tokens,lm_head (the embedding and head in full) or --trainable-token-indices "
                            + run.addedTokens.map { String($0.id) }.joined(separator: ","))
            }
        }

        if dryRun {
            // Warm the math libraries up (threads, GEMM buffers) with a short pass, as the run's first step will.
            if case .pairs(let pairs) = run.examples, let pair = pairs.first {
                let s = pair.sequences(maxLength: c.maxLength, truncation: c.truncationMode)
                _ = try model.sequenceLogProbs([s.chosen, s.rejected])
            } else if case .unpaired(let examples) = run.examples, let e = examples.first {
                _ = try model.sequenceLogProbs([e.sequence(maxLength: c.maxLength)])
            } else {
                _ = try model.evaluate(Array(train.prefix(1)))
            }
            model.releaseTrainingMemory()
            var resident = Memory.currentRSSBytes(releasingFreeMemory: true) ?? 0
            let loadedWeights = model.weightBytes
            let trainer = try run.trainer(runDirectory: nil)
            // LoftQ quantizes the base as the trainer starts: the unquantized weights measured above are not the run's.
            resident -= max(0, loadedWeights - model.weightBytes)
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
        if rank == 0, let samples = try SampleAnswersEvaluator.forRun(c, model: lm, runDirectory: out) {
            trainer.evaluators.append(samples)
            stderrPrint("samples: \(samples.items.count) prompts answered at every evaluation, into \(out)/\(SampleAnswersEvaluator.fileName)")
        }
        if let passes = trainer.evaPasses {
            let ranks = trainer.adapterConfig.rankPattern.values
            stderrPrint("EVA: components settled after \(passes) passes over batches; \(model.linearSlots.filter { trainer.adapterConfig.targets($0.name) }.count) layers adapted"
                        + (ranks.isEmpty ? ", every rank \(c.loraR)" : ", ranks \(ranks.min()!)…\(max(ranks.max()!, c.loraR)) redistributed"))
        }
        stderrPrint(String(format: "optimizer %@, state %.1f MiB", trainer.optimizer.name,
                           Double(trainer.optimizer.stateBytes) / 1_048_576))
        if ui && rank == 0 { try startLivePage(runDirectory: out) }
        let bar = ProgressBar()
        // After the run, with --ui, Ctrl-C stops serving the page (one handler for the whole process:
        // libdispatch installs its signal handler once).
        let pageServed = DispatchSemaphore(value: 0), trainingEnded = LockedFlag()
        let interrupts = InterruptHandler { [trainer] count in
            if trainingEnded.value {
                pageServed.signal()
            } else if count == 1 {
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
            // The base the adapter is relative to: the model trained on, or LoftQ's quantized one.
            let base = c.initLoRAWeights == .loftq ? Trainer.loftqBase(runDirectory: out) : c.model
            print("adapter written to \(out) (PEFT format); try it: finch generate \(base.map { "--model \($0) " } ?? "")--adapter \(out) \"...\"")
        }
        if ui && rank == 0 {
            trainingEnded.value = true
            stderrPrint("the live page stays at http://127.0.0.1:\(uiPort)/ until Ctrl-C (later: finch ui \(out))")
            pageServed.wait()
        }
    }

    /// Serves the live training page on loopback while the run goes on (`--ui`).
    func startLivePage(runDirectory: String) throws {
        var logger = Logger(label: "finch.ui")
        logger.logLevel = .error
        let app = TrainingMonitor.application(runDirectory: runDirectory, port: uiPort, logger: logger)
        let port = uiPort
        Task.detached {
            do { try await app.runService(gracefulShutdownSignals: []) } catch {
                FileHandle.standardError.write(Data("error: the live page cannot be served on 127.0.0.1:\(port): \(error) (choose another --ui-port)\n".utf8))
            }
        }
        FileHandle.standardError.write(Data("live training page: http://127.0.0.1:\(uiPort)/\n".utf8))
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
            var line = String(format: "%@ %d/%d  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %@", bar, m.step, total,
                              m.loss, m.learningRate, m.gradNorm, m.tokensPerSecond, Self.duration(eta))
            if let acc = m.objective["rewards/accuracies"], let margin = m.objective["rewards/margins"] {
                line += String(format: "  acc %.2f  margin %.3f", acc, margin)
            } else if let kl = m.objective["kl"] {
                line += String(format: "  kl %.3f  margin %.3f", kl, m.objective["rewards/margins"] ?? .nan)
            }
            if tty { FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8)) } else { stderrPrint(line) }
        case .evaluation(let e):
            clearLine()
            var parts: [String] = []
            if let l = e.loss, let p = e.perplexity { parts.append(String(format: "eval loss %.4f, perplexity %.2f (%d tokens)", l, p, e.tokens)) }
            if let l = e.loss, e.perplexity == nil, let acc = e.scores["eval_rewards/accuracies"] {
                parts.append(String(format: "eval loss %.4f, reward accuracy %.3f, margin %.4f (%d pairs)", l, acc,
                                    e.scores["eval_rewards/margins"] ?? .nan, Int(e.scores["eval_pairs"] ?? 0)))
            } else if let l = e.loss, e.perplexity == nil, let kl = e.scores["eval_kl"] {
                parts.append(String(format: "eval loss %.4f, kl %.4f, rewards %.4f (desirable) %.4f (undesirable) (%d examples)", l, kl,
                                    e.scores["eval_rewards/chosen"] ?? .nan, e.scores["eval_rewards/rejected"] ?? .nan,
                                    Int(e.scores["eval_examples"] ?? 0)))
            }
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
/// A Bool shared between threads.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}

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
