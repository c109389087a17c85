import FinchCore
import FinchModels
import FinchTokenizer
import Foundation

/// What a training run starts from, prepared from a `TrainingConfig`: the model (quantized as
/// asked, with the chat template given), the tokenized training data and the evaluation split.
/// `finch train`, a server's training route and an evaluator share this instead of each loading
/// and splitting by hand.
public struct TrainingRun {
    public let config: TrainingConfig
    /// The model being trained, of any kind, with its tokenizer and prompt format.
    public let model: LoadedModel
    public var trainable: any TrainableModel { model.model }
    public var tokenizer: Tokenizer { model.tokenizer }
    /// Where the model was loaded from.
    public var modelPath: String { model.path }
    /// The training file as read (format, counts of dropped and truncated examples); for a
    /// preference method, `preferences` instead (and `train` / `eval` are empty).
    public let dataset: LoadedDataset?
    public let train: [TrainingSequence]
    public let eval: [TrainingSequence]
    /// Preference training: the file as read, and the training and held-out pairs (or KTO's
    /// examples, their KL completions assigned per batch).
    public let preferences: LoadedPreferences?
    public let examples: PreferenceExamples
    public let evalExamples: PreferenceExamples
    /// Where `eval` came from.
    public let evalSource: EvalSource
    /// Tokens the run added to the tokenizer (`add_special_tokens`, `add_tokens`, a chat template's
    /// markers) with their ids, and the vocabulary before it grew to hold them (nil: it did not grow).
    public var addedTokens: [(token: String, id: Int)] = []
    public var vocabularyBefore: Int?
    /// Seconds spent loading the model.
    public let loadSeconds: Double
    /// Resident bytes of the process before the model loaded, and its peak just after (the load's own peak).
    public let residentBeforeLoading: Int
    public let measuredLoadPeak: Int

    /// The predicted peak of loading: the process before it plus what loading holds at once
    /// (`TrainableModel.loadPeakBytes`, from the source's bytes per value).
    public let predictedLoadPeak: Int

    /// Bytes of a model's weight files (a GGUF, or a directory's .safetensors).
    static func weightFileBytes(_ path: String) -> Int {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { return 0 }
        let files = isDir.boolValue
            ? ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".safetensors") }.map { path + "/" + $0 }
            : [path]
        return files.reduce(0) { $0 + ((try? fm.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
    }

    public enum EvalSource: Equatable, Sendable {
        case none
        /// `eval_data`.
        case file(String)
        /// Held out from the training data (`eval_fraction`).
        case heldOut(fraction: Double)
    }

    /// Loads the model and the data `config` names (`model`, `dtype`, the QLoRA settings,
    /// `chat_template`, `data`, `format`, the length limits, `eval_data` or `eval_fraction`).
    /// - Throws: ``SettingError`` for a missing `data` or an impossible setting;
    ///   the loaders' errors (model, tokenizer, data file) as they are.
    public static func prepare(config c: TrainingConfig) throws -> TrainingRun {
        try c.validate()
        guard let dataPath = c.data else { throw SettingError.missing(key: "data", advice: "no training data file was given (--data FILE, or data: in the run file)") }
        let t0 = Date()
        let before = Memory.currentRSSBytes(releasingFreeMemory: true) ?? 0
        var options = DatasetOptions(format: c.format, maxSeqLen: c.maxSeqLen, sourceMaxLen: c.sourceMaxLen,
                                     targetMaxLen: c.targetMaxLen, trainOnSource: c.trainOnSource)
        // LoftQ quantizes the base itself, against the adapter it initializes (`LoRAHost.createAdapter`).
        let loftq = c.initLoRAWeights == .loftq
        let lm = try LoadedModel.load(c.modelSpec, dtype: c.dtype ?? .f32, ggufBlocks: c.dtype == nil && !loftq,
                                      quantization: loftq ? nil : c.quantization, quantCompute: c.quantCompute, backend: c.backend)
        if let t = c.chatTemplate { try lm.useChatTemplate(file: t) }
        let (added, vocabularyBefore) = try addTokens(to: lm, config: c)
        options.decoderStartTokenId = lm.prompts.decoderStartTokenId.map(Int32.init)
        let trainable = lm.model, tokenizer = lm.tokenizer, path = lm.path
        let loadPeak = Int(Memory.peakRSSMiB() * 1_048_576)
        let files = weightFileBytes(path)
        let perValue = files > 0 ? Double(files) / Double(max(1, trainable.parameterCount)) : 4
        let predictedLoadPeak = before + trainable.loadPeakBytes(sourceBytesPerValue: perValue)
        let loadSeconds = Date().timeIntervalSince(t0)
        if c.method.isPreference {
            var source = EvalSource.none
            let start = options.decoderStartTokenId
            let (prefs, all) = try PreferenceData.load(path: dataPath, config: c, tokenizer: tokenizer, decoderStart: start, model: path)
            var examples = all, evalExamples = all.emptied
            if let e = c.evalData {
                evalExamples = try PreferenceData.load(path: e, config: c, tokenizer: tokenizer, decoderStart: start, model: path).examples
                source = .file(e)
            } else if c.evalFraction > 0 {
                (examples, evalExamples) = all.holdOut(fraction: c.evalFraction, seed: c.seed)
                source = .heldOut(fraction: c.evalFraction)
            }
            examples = examples.assigningKLCompletions(batchSize: c.batchSize)
            evalExamples = evalExamples.assigningKLCompletions(batchSize: c.batchSize)
            return TrainingRun(config: c, model: lm, dataset: nil, train: [], eval: [], preferences: prefs, examples: examples,
                               evalExamples: evalExamples, evalSource: source, addedTokens: added, vocabularyBefore: vocabularyBefore,
                               loadSeconds: loadSeconds, residentBeforeLoading: before,
                               measuredLoadPeak: loadPeak, predictedLoadPeak: predictedLoadPeak)
        }
        let loaded = try TrainingData.loadDataset(path: dataPath, options: options, tokenizer: tokenizer)
        var train = loaded.examples
        var eval: [TrainingSequence] = []
        var source = EvalSource.none
        if let e = c.evalData {
            eval = try TrainingData.load(path: e, options: options, tokenizer: tokenizer)
            source = .file(e)
        } else if c.evalFraction > 0 {
            (train, eval) = TrainingSplit.holdOut(train, fraction: c.evalFraction, seed: c.seed)
            source = .heldOut(fraction: c.evalFraction)
        }
        return TrainingRun(config: c, model: lm,
                           dataset: loaded, train: train, eval: eval, preferences: nil, examples: .pairs([]), evalExamples: .pairs([]), evalSource: source,
                           addedTokens: added, vocabularyBefore: vocabularyBefore,
                           loadSeconds: loadSeconds, residentBeforeLoading: before, measuredLoadPeak: loadPeak,
                           predictedLoadPeak: predictedLoadPeak)
    }

    /// Adds the tokens `c` asks for to `lm` (`LoadedModel.addTokens`): `add_special_tokens`, then the
    /// `<|…|>` markers of a `chat_template` file that the tokenizer does not read as one token
    /// (unless `add_chat_template_tokens` is false), as special tokens; then `add_tokens`. The draw
    /// of the new rows is seeded from `seed`. Then `eos_token` becomes the tokenizer's EOS.
    static func addTokens(to lm: LoadedModel, config c: TrainingConfig) throws -> ([(token: String, id: Int)], Int?) {
        var special = c.addSpecialTokens
        if c.addChatTemplateTokens, c.chatTemplate != nil, let text = lm.tokenizer.chatTemplate {
            for m in try ChatTemplate(text).markers where !special.contains(m) && !c.addTokens.contains(m)
                && lm.tokenizer.encode(m, addSpecialTokens: false).count != 1 {
                special.append(m)
            }
        }
        var added: [(token: String, id: Int)] = [], before: Int?
        if !special.isEmpty || !c.addTokens.isEmpty {
            let v = lm.model.vocabSize
            let ids = try lm.addTokens(special: special, plain: c.addTokens, seed: c.seed ^ 0x7E57_0CAB_5EED)
            added = Array(zip(special + c.addTokens, ids)).map { ($0.0, $0.1) }
            before = lm.model.vocabSize > v ? v : nil
        }
        if let e = c.eosToken { try lm.useEOSToken(e) }
        return (added, before)
    }

    /// A trainer for this run, writing into `runDirectory` when given.
    /// `world`: the ranks of a distributed run (give rank 0 alone the run directory).
    /// With `init_lora_weights` loftq, rank 0 saves the LoftQ-quantized base (and the tokenizer)
    /// under `Trainer.loftqBase(runDirectory:)`, which the adapter's `base_model_name_or_path` names:
    /// in bitsandbytes' 4-bit / int8 layout, or dequantized in f32 for a family whose quantized
    /// layers transformers cannot read as stored (T5, GPT-2).
    public func trainer(runDirectory: String?, world: (any TrainingWorld)? = nil) throws -> Trainer {
        let t = preferences != nil
            ? try Trainer(model: trainable, config: config, examples: examples, evalExamples: evalExamples, runDirectory: runDirectory, world: world)
            : try Trainer(model: trainable, config: config, train: train, eval: eval, runDirectory: runDirectory, world: world)
        if !addedTokens.isEmpty || config.eosToken != nil { t.tokenizer = model.tokenizer }
        if config.initLoRAWeights == .loftq, let runDirectory, (world?.rank ?? 0) == 0 {
            let active = model.model.activeAdapter
            model.model.setActiveAdapter(nil)   // the base alone
            defer { model.model.setActiveAdapter(active) }
            let path = Trainer.loftqBase(runDirectory: runDirectory), dtype: ExportDType = config.dtype == .bf16 ? .bf16 : .f32
            do {
                try model.model.saveHuggingFace(to: path, tokenizer: model.tokenizer, dtype: dtype, overwrite: true)
            } catch ExportError.unsupported {
                // A family whose quantized layers transformers cannot read as stored (T5, GPT-2's Conv1D): the
                // quantized values dequantized, in f32 (as PEFT's LoftQ example saves its base).
                try model.model.saveHuggingFace(to: path, tokenizer: model.tokenizer, dtype: .f32, overwrite: true, dequantize: true)
            }
        }
        return t
    }
}
