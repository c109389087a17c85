import FinchCore
import FinchLoRA
import FinchModels
import FinchTokenizer
import Foundation

/// Trains the active LoRA adapter of a model (creating one from the settings if none is
/// active): batches from a seeded sampler, gradient accumulation, clipping, AdamW, a schedule,
/// evaluation, checkpoints and exact resume. Progress goes to a callback; files go to the run
/// directory when one is given.
///
/// Exactness: everything random is a pure function of the seed and the step (the batch order
/// of each epoch, the dropout masks of each micro-batch), and the kernels are deterministic,
/// so a run resumed from a checkpoint computes the same losses as one that never stopped.
public final class Trainer: @unchecked Sendable {
    public let model: any TrainableModel
    public let config: TrainingConfig
    /// Written beside the adapter (every checkpoint and the output) when set: the tokenizer of a run
    /// that added tokens, which the adapter's grown embedding goes with (as TRL saves its tokenizer).
    public var tokenizer: Tokenizer?
    /// The forward passes EVA ran over the batches (init_lora_weights eva), nil otherwise.
    public private(set) var evaPasses: Int?
    public let train: [TrainingSequence]
    public let eval: [TrainingSequence]
    /// Preference training (`method` dpo, simpo, orpo, kto): the training and held-out pairs or
    /// KTO examples (`train` and `eval` are empty), and the objective.
    public private(set) var examples: PreferenceExamples
    public private(set) var evalExamples: PreferenceExamples
    public let preference: PreferenceObjective?
    public let run: RunDirectory?
    /// Evaluations run with the held-out loss at every evaluation (an evaluation happens when
    /// there is held-out data or an evaluator).
    public var evaluators: [any TrainingEvaluator] = []
    var evaluates: Bool { !eval.isEmpty || !evalExamples.isEmpty || !evaluators.isEmpty }
    /// Training examples: sequences, pairs or KTO's examples.
    public var exampleCount: Int { preference == nil ? train.count : examples.count }
    /// The trained adapter's name in the model and its PEFT config.
    public let adapterName: String
    public let adapterConfig: AdapterConfig
    public let optimizer: any Optimizer
    var sampler: BatchSampler
    /// The processes training together (`mpirun`), nil for one process. Every rank draws the same
    /// global batch of world × grad_accum micro-batches and takes its own block of grad_accum;
    /// the gradients and losses are summed across ranks in rank order before clipping and the
    /// optimizer step, so every rank holds the same adapter. Only the rank 0 trainer should be
    /// given a run directory (it writes metrics and checkpoints) and it alone evaluates.
    public let world: (any TrainingWorld)?
    private let lock = NSLock()
    private var stopRequested = false
    /// A test seam for fault injection: called with (step, rank, this rank's gradients) after the
    /// micro-batches are summed and before the ranks' sum and the NaN check, so that a test can
    /// break one rank's gradients as a bad batch or kernel would. `finch train` never sets it; the
    /// tests set it through the `finch-fault-injection` runner (Tests/FaultInjection).
    @_spi(Testing) public var afterGradients: (@Sendable (_ step: Int, _ rank: Int, _ gradients: [Buffer<Float>]) -> Void)?

    /// Optimizer steps per epoch (at least 1) and in the whole run.
    public let stepsPerEpoch: Int
    public let totalSteps: Int

    /// A supervised fine-tuning run (`method` sft) on `train`, evaluated on `eval`.
    public convenience init(model: any TrainableModel, config: TrainingConfig, train: [TrainingSequence], eval: [TrainingSequence] = [],
                            runDirectory: String? = nil, world: (any TrainingWorld)? = nil) throws {
        try self.init(model: model, config: config, train: train, eval: eval, examples: .pairs([]), evalExamples: .pairs([]),
                      runDirectory: runDirectory, world: world)
    }

    /// A preference run (`method` dpo, simpo or orpo) on `pairs`, evaluated on `evalPairs`.
    public convenience init(model: any TrainableModel, config: TrainingConfig, pairs: [PreferencePair], evalPairs: [PreferencePair] = [],
                            runDirectory: String? = nil, world: (any TrainingWorld)? = nil) throws {
        try self.init(model: model, config: config, examples: .pairs(pairs), evalExamples: .pairs(evalPairs), runDirectory: runDirectory,
                      world: world)
    }

    /// A preference run on `examples` (pairs, or KTO's unpaired examples with their KL completions
    /// assigned), evaluated on `evalExamples`. With `ref_adapter`, that adapter is loaded twice:
    /// frozen as the reference ("ref") and as the adapter trained.
    public convenience init(model: any TrainableModel, config: TrainingConfig, examples: PreferenceExamples,
                            evalExamples: PreferenceExamples? = nil, runDirectory: String? = nil, world: (any TrainingWorld)? = nil) throws {
        try self.init(model: model, config: config, train: [], eval: [], examples: examples, evalExamples: evalExamples ?? examples.emptied,
                      runDirectory: runDirectory, world: world)
    }

    private init(model: any TrainableModel, config: TrainingConfig, train: [TrainingSequence], eval: [TrainingSequence],
                 examples: PreferenceExamples, evalExamples: PreferenceExamples, runDirectory: String?, world: (any TrainingWorld)?) throws {
        try config.validate()
        self.world = world
        guard config.method.isPreference == !examples.isEmpty || (train.isEmpty && examples.isEmpty) else {
            throw TrainError.methodDataMismatch(method: config.method.rawValue)
        }
        guard !train.isEmpty || !examples.isEmpty else { throw TrainError.noTrainingExamples }
        let unpaired: Bool = if case .unpaired = examples { true } else { false }
        guard examples.isEmpty || unpaired == (config.method == .kto) else {
            throw TrainError.methodDataMismatch(method: config.method.rawValue)
        }
        self.model = model; self.config = config; self.train = train; self.eval = eval
        self.examples = examples; self.evalExamples = evalExamples
        var referenceAdapter: String?
        if config.method.isPreference, let refSpec = config.refAdapter, !config.referenceFree {
            let ref = try ModelStore.resolveAdapter(refSpec)
            if !model.adapterNames.contains(Self.referenceAdapterName) {
                if let v = try LoRAAdapter.savedVocabulary(directory: ref, copyable: model.copyableShapes), v != model.vocabSize {
                    throw SettingError.invalid(key: "ref_adapter", reason: "\(ref) was trained with tokens added (its vocabulary has \(v) tokens, the model \(model.vocabSize)); preference training from it is not supported yet (merge it first: finch merge, then train on the merged model)")
                }
                try model.loadAdapter(directory: ref, name: Self.referenceAdapterName)
                try model.loadAdapter(directory: ref, name: "default")
            }
            referenceAdapter = Self.referenceAdapterName
        }
        preference = config.method.isPreference ? PreferenceObjective(config: config, referenceAdapter: referenceAdapter) : nil
        let lengths = preference.map { p in (0..<examples.count).map { p.rows(examples, $0) } } ?? train.map(\.tokens.count)
        // KTO takes its batches in order (TRL's sequential sampling): each example's KL completion
        // was assigned from its batch.
        sampler = try BatchSampler(lengths: lengths, batchSize: config.batchSize, seed: config.seed,
                                   shuffle: config.method != .kto, groupByLength: config.groupByLength)
        if let a = model.activeAdapter {
            adapterName = a
            var c = config.adapterConfig
            if let existing = model.adapterConfigs[a] { c = existing }
            adapterConfig = c
        } else {
            adapterName = "default"
            var c = config.adapterConfig
            // LoftQ: the adapter is relative to the LoftQ-quantized base the run saves (`TrainingRun.trainer`).
            if config.initLoRAWeights == .loftq, let runDirectory { c.baseModelNameOrPath = Self.loftqBase(runDirectory: runDirectory) }
            if config.initLoRAWeights == .eva {
                // EVA: A from the principal components of each target's inputs over the run's batches (in the order of
                // its first epoch), the ranks redistributed; B zero.
                if (world?.size ?? 1) > 1 {
                    throw SettingError.invalid(key: "init_lora_weights", reason: "eva with several ranks (MPI) is not supported yet: each rank would analyse its own share of the data; train in one process, or start from true")
                }
                guard let causal = model as? any CausalLM else {
                    throw SettingError.invalid(key: "init_lora_weights", reason: "eva for \(model.architecture) (an encoder-decoder model) is not supported yet; start from true")
                }
                var plan = sampler
                let batches = (0..<plan.batchesPerEpoch).map { _ in plan.next().indices.map { train[$0] } }
                let start = try model.eva(config: c, batches: batches) { batch in
                    _ = try causal.forward(batch.map { SequenceInput(tokens: $0.tokens.map(Int.init), cache: causal.makeCache(capacity: $0.tokens.count)) },
                                           logits: .last)
                }
                c = start.adapterConfig(c, modules: model.linearSlots.map(\.name))
                adapterConfig = c
                let adapter = try model.createAdapter(config: c, name: adapterName, seed: config.seed)
                for (module, a) in start.a { adapter.modules[module]!.a.pointer.update(from: a, count: a.count) }
                model.adapterParametersChanged()
                evaPasses = start.passes
            } else {
                adapterConfig = c
                try model.createAdapter(config: adapterConfig, name: adapterName, seed: config.seed,
                                        quantization: config.initLoRAWeights == .loftq ? config.quantization : nil)
            }
        }
        model.zeroGradients()
        let trainable = model.trainableParameters()
        optimizer = try config.optimizer.make(
            parameters: trainable,
            hyper: .init(beta1: config.adamBeta1, beta2: config.adamBeta2, epsilon: config.adamEpsilon,
                         weightDecay: config.weightDecay),
            groups: config.loraPlus?.groups(names: trainable.map(\.name), learningRate: config.learningRate),
            backend: model.backend)
        stepsPerEpoch = max(1, sampler.batchesPerEpoch / (config.gradAccum * (world?.size ?? 1)))
        totalSteps = config.maxSteps ?? Int((config.epochs * Double(stepsPerEpoch)).rounded(.up))
        run = try runDirectory.map { try RunDirectory(path: $0) }
    }

    /// Where a LoftQ run saves the quantized base its adapter is relative to (absolute, as the
    /// adapter's `base_model_name_or_path` names it).
    public static func loftqBase(runDirectory: String) -> String {
        URL(fileURLWithPath: runDirectory).appendingPathComponent("loftq-base").standardizedFileURL.path
    }

    /// A copy of the batch sampler at the run's start (for planning; the run's own is untouched).
    var samplerForPlanning: BatchSampler { sampler }

    /// The name under which `ref_adapter` is loaded as the reference (TRL's "ref").
    public static let referenceAdapterName = "ref"

    /// Asks a running `train` to stop after the current step, write a checkpoint and return
    /// (safe to call from a signal handler's queue).
    public func requestStop() { lock.lock(); stopRequested = true; lock.unlock() }
    var shouldStop: Bool { lock.lock(); defer { lock.unlock() }; return stopRequested }

    /// The schedule of this run.
    public var schedule: LRSchedule {
        let warmup = config.warmupSteps > 0 ? config.warmupSteps : LRSchedule.warmup(ratio: config.warmupRatio, totalSteps: totalSteps)
        return LRSchedule(kind: config.lrScheduler, base: config.learningRate, warmupSteps: warmup, totalSteps: totalSteps)
    }

    /// Trainable values (adapter factors and DoRA magnitudes).
    public var trainableParameterCount: Int { optimizer.parameters.reduce(0) { $0 + $1.value.count } }

    /// A hash of the training examples, recorded in checkpoints (computed once: the data is fixed).
    lazy var dataFingerprint: String = {
        var h = FNV1a()
        for s in train {
            h.combine(Int32(s.tokens.count)); s.tokens.forEach { h.combine($0) }; s.labels.forEach { h.combine($0) }
            if let src = s.source { h.combine(Int32(-1)); h.combine(Int32(src.count)); src.forEach { h.combine($0) } }   // encoder-decoder pairs
        }
        examples.fingerprint(into: &h)
        return String(h.value, radix: 16)
    }()

    /// The dropout key of micro-batch `micro` of step `step`.
    func dropoutKey(step: Int, micro: Int) -> UInt64? {
        guard adapterConfig.loraDropout > 0, !(preference != nil && config.disableDropout) else { return nil }
        return SplitMix64.mix(config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(step) << 16 &+ UInt64(micro))
    }

    /// Runs until `totalSteps` (or a stop request); `resumeFrom`: a checkpoint (or run directory)
    /// whose adapter, optimizer state, schedule position and data position are restored first.
    @discardableResult
    public func train(resumeFrom: String? = nil, progress: (TrainerEvent) -> Void = { _ in }) throws -> TrainingSummary {
        let started = Date()
        var step = 0
        var losses: [Double] = []
        var secondsBefore = 0.0
        if let resumeFrom {
            let state = try restore(from: try Checkpoint.resolve(resumeFrom))
            step = state.globalStep; losses = state.losses; secondsBefore = state.seconds
            run?.truncate(after: step)
        }
        if let run {
            Checkpoint.removeLeftovers(runDirectory: run.path)
            try run.writeConfig(config)
            if config.reportsToTensorBoard { try run.startTensorBoard(after: step, config: config) }
        }
        if let p = preference, config.precomputeRefLogProbs, !p.referenceFree {
            try p.precomputeReference(model: model, examples: &examples, batchSize: config.batchSize, trained: adapterName)
            try p.precomputeReference(model: model, examples: &evalExamples, batchSize: config.batchSize, trained: adapterName)
        }
        progress(.started(totalSteps: totalSteps, startStep: step, trainExamples: exampleCount,
                          evalExamples: preference == nil ? eval.count : evalExamples.count,
                          trainableParameters: trainableParameterCount))
        let startStep = step, startedAt = Date().timeIntervalSince1970
        func progressFile(_ status: RunProgress.Status, force: Bool, error: String? = nil) {
            let now = Date().timeIntervalSince1970, done = step - startStep
            let eta = done > 0 && status == .running ? (now - startedAt) / Double(done) * Double(totalSteps - step) : nil
            run?.writeProgress(RunProgress(status: status, step: step, totalSteps: totalSteps, startStep: startStep, startedAt: startedAt,
                                           updatedAt: now, etaSeconds: eta, error: error), force: force)
        }
        progressFile(.running, force: true)
        do {
            let buffers = StepBuffers(optimizer: optimizer, gradAccum: config.gradAccum, ranks: world?.size ?? 1)
            var lastCheckpoint: String? = run.flatMap { Checkpoint.list(runDirectory: $0.path).last?.path }
            var lastEval: EvalMetrics?
            var interrupted = false
            while step < totalSteps {
                let t0 = Date()
                let done = try self.step(step, buffers: buffers, lastCheckpoint: lastCheckpoint)
                step += 1
                losses.append(done.loss)
                let seconds = Date().timeIntervalSince(t0)
                let m = StepMetrics(step: step, epoch: Double(step) / Double(stepsPerEpoch), loss: done.loss, learningRate: done.learningRate,
                                    gradNorm: done.gradNorm, tokens: done.tokens, seconds: seconds,
                                    tokensPerSecond: Double(done.tokens) / seconds, peakRSSMiB: Memory.peakRSSMiB(),
                                    commSeconds: done.ranks?.seconds, commBytes: done.ranks?.bytes, objective: done.objective)
                if config.loggingSteps > 0 && (step % config.loggingSteps == 0 || step == totalSteps) {
                    run?.append(m)
                    run?.drawLossCurve()
                }
                progress(.step(m, totalSteps: totalSteps))
                progressFile(.running, force: step == totalSteps)
                if evaluates && (world?.rank ?? 0) == 0 && config.evalSteps > 0 && (step % config.evalSteps == 0 || step == totalSteps) {
                    let e = try evaluate(step: step)
                    lastEval = e
                    run?.append(e); run?.drawLossCurve()
                    progress(.evaluation(e))
                }
                interrupted = shouldStop && step < totalSteps
                if let run, (config.saveSteps > 0 && step % config.saveSteps == 0) || interrupted {
                    do {
                        lastCheckpoint = try saveCheckpoint(run: run, step: step, losses: losses,
                                                            seconds: secondsBefore + Date().timeIntervalSince(started))
                    } catch {
                        throw TrainError.checkpointFailed(step: step, reason: "\(error)", lastCheckpoint: lastCheckpoint)
                    }
                    progress(.checkpoint(step: step, path: lastCheckpoint!))
                }
                if interrupted { break }
            }
            if evaluates && (world?.rank ?? 0) == 0 && lastEval?.step != step && !interrupted && config.evalSteps == 0 {
                let e = try evaluate(step: step)   // one evaluation at the end when none was scheduled
                lastEval = e
                run?.append(e); run?.drawLossCurve()
                progress(.evaluation(e))
            }
            var output: String? = lastCheckpoint
            if let run, !interrupted {
                try model.adapter(named: adapterName, config: adapterConfig).save(to: run.path)
                try tokenizer?.writeTokenizerJSON(to: run.path)
                output = run.path
            }
            let summary = TrainingSummary(steps: step, totalSteps: totalSteps, losses: losses, lastEval: lastEval,
                                          interrupted: interrupted, outputPath: output,
                                          seconds: secondsBefore + Date().timeIntervalSince(started))
            progressFile(interrupted ? .interrupted : .finished, force: true)
            progress(.finished(summary))
            return summary
        } catch {
            progressFile(.failed, force: true, error: "\(error)")
            throw error
        }
    }

    /// What one optimizer step did.
    struct StepOutcome {
        /// The mean loss over the global batch (NaN when no position counted).
        var loss: Double
        var learningRate: Double
        /// The gradient norm before clipping.
        var gradNorm: Double
        /// Tokens of the global batch.
        var tokens: Int
        /// The sum across the ranks (nil for one process).
        var ranks: RankSum?
        /// Preference training: TRL's metrics of the step (means over its pairs).
        var objective: [String: Double] = [:]
    }

    /// Buffers a step reuses, allocated once for the run: the optimizer's gradients, the running sum
    /// of a step's micro-batch gradients (grad_accum > 1), and the flat buffer the ranks sum.
    struct StepBuffers {
        let grads: [Buffer<Float>]
        let sums: [Buffer<Float>]?
        let flat: Buffer<Float>?

        init(optimizer: any Optimizer, gradAccum: Int, ranks: Int) {
            grads = optimizer.parameters.map(\.grad)
            sums = gradAccum > 1 ? grads.map { Buffer<Float>(uninitializedCount: $0.count) } : nil
            flat = ranks > 1 ? Buffer<Float>(uninitializedCount: grads.reduce(0) { $0 + $1.count }) : nil
        }
    }

    /// Optimizer step `step` (0-based): this rank's micro-batches of the global batch, their gradients
    /// summed in order, the sum across the ranks, clipping, the non-finite check, and the update.
    /// The sampler moves on by one global batch. `lastCheckpoint` is named by the error of a non-finite step.
    func step(_ step: Int, buffers: StepBuffers, lastCheckpoint: String?) throws -> StepOutcome {
        // The global batch: world × grad_accum micro-batches; this rank takes its block.
        let ranks = world?.size ?? 1, rank = world?.rank ?? 0
        var micro: [[Int]] = []
        for _ in 0..<(config.gradAccum * ranks) { micro.append(sampler.next().indices) }
        let mine = Array(micro[(rank * config.gradAccum)..<((rank + 1) * config.gradAccum)])
        model.zeroGradients()
        if let p = preference { return try preferenceStep(step, objective: p, micro: micro, mine: mine, buffers: buffers, lastCheckpoint: lastCheckpoint) }
        let counted = micro.reduce(0) { $0 + $1.reduce(0) { $0 + train[$1].lossTokenCount } }
        var loss = LossSum()
        if counted > 0 {
            for (k, batch) in mine.enumerated() {
                if k > 0 { model.zeroGradients() }
                loss = loss + (try model.forwardBackward(batch.map { train[$0] }, lossScale: 1 / Float(counted),
                                                        checkpointing: config.gradientCheckpointing,
                                                        dropoutKey: dropoutKey(step: step, micro: rank * config.gradAccum + k)))
                accumulate(microBatch: k, buffers: buffers)
            }
            finishAccumulation(buffers)
        }
        var none: [Double] = []
        let (summedLoss, norm, lr, summed) = try update(step, loss: loss, extra: &none, counted: counted > 0, buffers: buffers,
                                                        lastCheckpoint: lastCheckpoint)
        return StepOutcome(loss: counted > 0 ? summedLoss.mean : .nan, learningRate: lr, gradNorm: norm,
                           tokens: micro.reduce(0) { $0 + $1.reduce(0) { $0 + train[$1].tokens.count } }, ranks: summed)
    }

    /// Adds micro-batch `k`'s gradients to the step's sum (with grad_accum > 1). Each micro-batch's
    /// gradients are computed alone and added to the sum in order (as autograd accumulates .grad),
    /// so that one process with grad_accum N·k and N ranks with k add the same numbers the same way
    /// (exactly when k = 1).
    func accumulate(microBatch k: Int, buffers: StepBuffers) {
        guard let sums = buffers.sums else { return }
        for (s, g) in zip(sums, buffers.grads) {
            if k == 0 { s.pointer.update(from: g.pointer, count: g.count) } else { for i in 0..<g.count { s[i] += g[i] } }
        }
    }

    /// Puts the step's summed gradients back where the optimizer reads them.
    func finishAccumulation(_ buffers: StepBuffers) {
        if let sums = buffers.sums { for (s, g) in zip(sums, buffers.grads) { g.pointer.update(from: s.pointer, count: g.count) } }
    }

    /// The end of a step: the fault-injection seam, the sum across the ranks (of the gradients, the
    /// loss and `extra`, which every rank then holds summed), clipping, the non-finite check (when
    /// anything `counted`), and the optimizer's update.
    func update(_ step: Int, loss: LossSum, extra: inout [Double], counted: Bool, buffers: StepBuffers,
                lastCheckpoint: String?) throws -> (loss: LossSum, norm: Double, lr: Double, ranks: RankSum?) {
        let grads = buffers.grads
        afterGradients?(step + 1, world?.rank ?? 0, grads)
        var loss = loss
        var summed: RankSum?
        if let world, world.size > 1, let flat = buffers.flat {
            let s = try world.sumGradients(grads, loss: loss, through: flat)
            loss = s.loss
            summed = s
            if !extra.isEmpty { try world.sum(&extra, count: extra.count) }
        }
        let norm = config.maxGradNorm > 0 ? GradientNorm.clip(grads, maxNorm: config.maxGradNorm, backend: model.backend)
            : GradientNorm.total(grads, backend: model.backend)
        if counted && (!loss.mean.isFinite || !norm.isFinite) {
            throw TrainError.nonFiniteLoss(step: step + 1, loss: loss.mean.isFinite ? norm : loss.mean, lastCheckpoint: lastCheckpoint,
                                           ranks: summed?.report)
        }
        let lr = schedule.rate(at: step)
        optimizer.update(lr: lr)
        model.adapterParametersChanged()
        return (loss, norm, lr, summed)
    }

    /// Mean loss and perplexity on the evaluation examples (in batches of `batch_size`, no dropout),
    /// and the evaluators' scores. Preference training: the mean loss over the held-out pairs and
    /// TRL's metrics as `eval_rewards/chosen` etc. (no perplexity).
    public func evaluate(step: Int) throws -> EvalMetrics {
        if let p = preference, !evalExamples.isEmpty {
            var loss = 0.0, count = 0, tokens = 0, sums: [String: MetricSum] = [:], i = 0
            while i < evalExamples.count {
                let b = try p.evaluate(model: model, examples: evalExamples[i..<min(i + config.batchSize, evalExamples.count)], trained: adapterName)
                loss += b.loss * Double(b.examples); count += b.examples; tokens += b.tokens
                sums.merge(b.metrics, uniquingKeysWith: +)
                i += config.batchSize
            }
            var scores: [String: Double] = [:]
            for (k, v) in sums { scores["eval_" + k] = v.mean }
            for e in evaluators { scores.merge(try e.evaluate(step: step)) { _, new in new } }
            scores[config.method == .kto ? "eval_examples" : "eval_pairs"] = Double(count)
            return EvalMetrics(step: step, loss: loss / Double(count), perplexity: nil, tokens: tokens, scores: scores)
        }
        var total = LossSum()
        var i = 0
        while i < eval.count {
            total = total + (try model.evaluate(Array(eval[i..<min(i + config.batchSize, eval.count)])))
            i += config.batchSize
        }
        var scores: [String: Double] = [:]
        for e in evaluators { scores.merge(try e.evaluate(step: step)) { _, new in new } }
        let held = total.count > 0
        return EvalMetrics(step: step, loss: held ? total.mean : nil, perplexity: held ? exp(total.mean) : nil,
                           tokens: total.count, scores: scores)
    }

    func saveCheckpoint(run: RunDirectory, step: Int, losses: [Double], seconds: Double) throws -> String {
        let state = TrainerState(globalStep: step, totalSteps: totalSteps, sampler: sampler.state,
                                 dataFingerprint: dataFingerprint, trainExamples: exampleCount, losses: losses,
                                 seconds: seconds, config: config, worldSize: (world?.size ?? 1) > 1 ? world!.size : nil,
                                 bf16Compute: GEMM.bf16Compute.rawValue)
        let path = try Checkpoint.write(runDirectory: run.path, step: step,
                                        adapter: model.adapter(named: adapterName, config: adapterConfig),
                                        optimizer: optimizer, state: state, tokenizer: tokenizer)
        Checkpoint.rotate(runDirectory: run.path, limit: config.saveTotalLimit)
        return path
    }

    /// Loads a checkpoint's adapter values, optimizer state and data position into this trainer.
    func restore(from checkpoint: String) throws -> TrainerState {
        let state = try Checkpoint.readState(checkpoint)
        let c = state.config
        func mismatch(_ what: String, _ a: Any, _ b: Any) -> TrainError {
            .badCheckpoint(path: checkpoint, reason: "it was made with \(what) \(a), this run has \(b); resume with the same settings")
        }
        if c.loraR != config.loraR { throw mismatch("lora_r", c.loraR, config.loraR) }
        if c.targetModules != config.targetModules { throw mismatch("target_modules", c.targetModules, config.targetModules) }
        if c.useDoRA != config.useDoRA { throw mismatch("use_dora", c.useDoRA, config.useDoRA) }
        if c.batchSize != config.batchSize { throw mismatch("batch_size", c.batchSize, config.batchSize) }
        if c.gradAccum != config.gradAccum { throw mismatch("grad_accum", c.gradAccum, config.gradAccum) }
        if c.seed != config.seed { throw mismatch("seed", c.seed, config.seed) }
        if c.groupByLength != config.groupByLength { throw mismatch("group_by_length", c.groupByLength, config.groupByLength) }
        let ranks = world?.size ?? 1
        if (state.worldSize ?? 1) != ranks {
            throw TrainError.badCheckpoint(path: checkpoint, reason: "it was written by a run of \(state.worldSize ?? 1) rank(s), this run has \(ranks); every step draws ranks × grad_accum micro-batches, so resume with the same number of ranks (mpirun -np \(state.worldSize ?? 1)), or change grad_accum so that ranks × grad_accum stays the same in a new run")
        }
        // The bf16 products as the run computed them, unless FINCH_BF16_COMPUTE names a path.
        if let recorded = state.bf16Compute {
            guard let mode = GEMM.BF16Compute(rawValue: recorded) else {
                throw TrainError.badCheckpoint(path: checkpoint, reason: "bf16_compute '\(recorded)' is neither native nor f32")
            }
            if GEMM.bf16ComputeFromEnvironment == nil { GEMM.setBF16Compute(mode) }
        }
        if state.trainExamples != exampleCount || state.dataFingerprint != dataFingerprint {
            throw TrainError.badCheckpoint(path: checkpoint, reason: "the training data differs from the data it was made with (\(state.trainExamples) examples then, \(exampleCount) now)")
        }
        let saved = try LoRAAdapter.load(directory: checkpoint, linears: model.linearModules, copyable: model.copyableShapes,
                                         inputEmbedding: model.inputEmbeddingName)
        let live = model.adapter(named: adapterName, config: adapterConfig)
        for (name, m) in live.modules {
            if let (a0, b0) = m.initial {
                // Saved relative to the original base (`LoRAAdapter.relativeToOriginalBase`): A = [A; A₀], B = [B, −B₀].
                let r = m.rank, o = m.outFeatures
                guard let s = saved.modules[name], s.rank == 2 * r, s.a.count == 2 * m.a.count,
                      Array(s.a.array[m.a.count...]) == a0,
                      (0..<o).allSatisfy({ row in (0..<r).allSatisfy { s.b[row * 2 * r + r + $0] == -b0[row * r + $0] } }) else {
                    throw TrainError.badCheckpoint(path: checkpoint, reason: "its adapter for \(name) was not trained from this run's \(adapterConfig.initLoRAWeights) start (init_lora_weights, lora_r and the base must be the same)")
                }
                m.a.pointer.update(from: s.a.pointer, count: m.a.count)
                for row in 0..<o { for k in 0..<r { m.b[row * r + k] = s.b[row * 2 * r + k] } }
                continue
            }
            guard let s = saved.modules[name], s.a.count == m.a.count, s.b.count == m.b.count else {
                throw TrainError.badCheckpoint(path: checkpoint, reason: "its adapter has no matching factors for \(name)")
            }
            m.a.pointer.update(from: s.a.pointer, count: m.a.count)
            m.b.pointer.update(from: s.b.pointer, count: m.b.count)
            if let mm = m.magnitude, let sm = s.magnitude { mm.pointer.update(from: sm.pointer, count: mm.count) }
        }
        for (module, c) in live.copies {
            guard let s = saved.copies[module], s.value.count == c.value.count else {
                throw TrainError.badCheckpoint(path: checkpoint, reason: "its adapter has no trained copy of \(module) (modules_to_save)")
            }
            c.value.pointer.update(from: s.value.pointer, count: c.value.count)
        }
        if state.config.addSpecialTokens != config.addSpecialTokens || state.config.addTokens != config.addTokens
            || state.config.eosToken != config.eosToken || state.config.addChatTemplateTokens != config.addChatTemplateTokens {
            throw TrainError.badCheckpoint(path: checkpoint, reason: "it was trained with other added tokens (add_special_tokens \(state.config.addSpecialTokens), add_tokens \(state.config.addTokens), eos_token \(state.config.eosToken ?? "none")): resume with the same")
        }
        // A grown vocabulary: the checkpoint's embedding and head rows must be this run's (the same tokens added with the same seed).
        guard Set(saved.baseLayers.keys) == Set(live.baseLayers.keys) else {
            throw TrainError.badCheckpoint(path: checkpoint, reason: live.baseLayers.isEmpty ? "its adapter was trained with tokens added (its embedding grew); add the same tokens" : "its adapter was trained without the tokens this run adds")
        }
        for (module, w) in live.baseLayers where w.floatValues().array != saved.baseLayers[module]!.floatValues().array {
            throw TrainError.badCheckpoint(path: checkpoint, reason: "its \(module) rows differ from this run's grown vocabulary (add the same tokens, in the same order, with the same seed)")
        }
        if let t = live.tokenRows {
            guard let s = saved.tokenRows, s.indices == t.indices else {
                throw TrainError.badCheckpoint(path: checkpoint, reason: "its adapter does not train the rows of tokens \(t.indices) (trainable_token_indices)")
            }
            t.value.pointer.update(from: s.value.pointer, count: t.value.count)
        }
        model.adapterParametersChanged()
        try optimizer.load(from: (checkpoint as NSString).appendingPathComponent("optimizer.safetensors"))
        sampler.state = state.sampler
        return state
    }
}
