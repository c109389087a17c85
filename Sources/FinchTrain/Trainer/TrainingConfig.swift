import FinchCore
import FinchLoRA
import FinchModels
import FinchQuant
import Foundation
import Yams

/// Every setting of a training run, with the snake_case keys of its YAML file (`finch train
/// --config run.yaml`) and of the resolved `train_config.json` written into the run directory.
/// Names follow Hugging Face's TrainingArguments and PEFT's LoraConfig; qlora's flag spellings
/// are accepted as aliases when read (`per_device_train_batch_size`, `gradient_accumulation_steps`,
/// `lora_r`, `num_train_epochs`, `source_max_len`, `target_max_len`, `dataset`, `dataset_format`,
/// `output_dir`, `model_name_or_path`, `max_grad_norm`, `lr_scheduler_type`, …).
public struct TrainingConfig: Codable, Sendable, Equatable {
    // What to train on.
    public var model: String? = nil
    public var data: String? = nil
    /// The data format (nil = detected from the file).
    public var format: DatasetFormat? = nil
    public var evalData: String? = nil
    /// Held-out fraction of `data` for evaluation when there is no `eval_data` (0 = none).
    public var evalFraction: Double = 0
    public var output: String? = nil
    /// Storage / compute type of the frozen weights: f32, or bf16 (bf16 products, f32 accumulation and adapters).
    public var dtype: WeightDType = .f32
    /// A Jinja chat template file used instead of the model's own (for models whose files carry none).
    public var chatTemplate: String? = nil

    // QLoRA (bitsandbytes' BitsAndBytesConfig): 4-bit or LLM.int8 frozen block linears.
    /// nf4 or fp4 (4-bit), int8 (LLM.int8); nil = no quantization.
    public var quantize: QuantMethod? = nil
    /// LLM.int8's outlier threshold (`llm_int8_threshold`; 0 = no outliers).
    public var int8Threshold: Float = 6
    public var doubleQuant: Bool = false
    public var quantBlocksize: Int = 64
    /// Precision of the 4-bit layers' products (f32 or bf16); nil = `dtype`.
    public var computeDType: WeightDType? = nil

    // Data.
    public var maxSeqLen: Int = 512
    public var sourceMaxLen: Int? = nil
    public var targetMaxLen: Int? = nil
    public var trainOnSource: Bool = false
    public var groupByLength: Bool = false

    // LoRA (PEFT's LoraConfig).
    public var loraR: Int = 8
    public var loraAlpha: Double = 16
    public var loraDropout: Double = 0.05
    /// Module names, or ["all-linear"].
    public var targetModules: [String] = ["all-linear"]
    public var useRSLoRA: Bool = false
    public var useDoRA: Bool = false
    public var initLoRAWeights: String = "true"
    public var layersToTransform: [Int]? = nil

    // Optimization (HF TrainingArguments).
    public var learningRate: Double = 2e-4
    public var lrScheduler: LRSchedule.Kind = .linear
    public var warmupSteps: Int = 0
    public var warmupRatio: Double = 0
    public var batchSize: Int = 4
    public var gradAccum: Int = 1
    /// Optimizer steps; nil = run `epochs` epochs.
    public var maxSteps: Int? = nil
    public var epochs: Double = 1
    /// 0 = no clipping.
    public var maxGradNorm: Double = 1.0
    public var weightDecay: Double = 0
    public var adamBeta1: Double = 0.9
    public var adamBeta2: Double = 0.999
    public var adamEpsilon: Double = 1e-8
    /// adamw, paged_adamw, adamw_8bit or paged_adamw_8bit (`OptimizerKind`).
    public var optimizer: OptimizerKind = .adamw
    public var seed: UInt64 = 42
    public var gradientCheckpointing: Bool = false

    // Reporting and checkpoints (0 = never).
    public var loggingSteps: Int = 1
    public var evalSteps: Int = 0
    public var saveSteps: Int = 0
    /// Checkpoints kept (oldest deleted first); nil = all.
    public var saveTotalLimit: Int? = nil

    // MMLU at every evaluation (qlora's --do_mmlu_eval); run by the evaluator the caller attaches.
    public var mmluEval: Bool = false
    /// qlora's MMLU file (e.g. data/mmlu/zero_shot_mmlu_val.json).
    public var mmluData: String? = nil
    /// Only the first N items (qlora's max_mmlu_samples).
    public var maxMMLUSamples: Int? = nil

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, data, format, evalData = "eval_data", evalFraction = "eval_fraction", output, dtype
        case chatTemplate = "chat_template"
        case quantize, int8Threshold = "llm_int8_threshold", doubleQuant = "double_quant", quantBlocksize = "quant_blocksize", computeDType = "compute_dtype"
        case maxSeqLen = "max_seq_len", sourceMaxLen = "source_max_len", targetMaxLen = "target_max_len"
        case trainOnSource = "train_on_source", groupByLength = "group_by_length"
        case loraR = "lora_r", loraAlpha = "lora_alpha", loraDropout = "lora_dropout", targetModules = "target_modules"
        case useRSLoRA = "use_rslora", useDoRA = "use_dora", initLoRAWeights = "init_lora_weights"
        case layersToTransform = "layers_to_transform"
        case learningRate = "learning_rate", lrScheduler = "lr_scheduler", warmupSteps = "warmup_steps"
        case warmupRatio = "warmup_ratio", batchSize = "batch_size", gradAccum = "grad_accum", maxSteps = "max_steps"
        case epochs, maxGradNorm = "max_grad_norm", weightDecay = "weight_decay", adamBeta1 = "adam_beta1"
        case adamBeta2 = "adam_beta2", adamEpsilon = "adam_epsilon", optimizer, seed, gradientCheckpointing = "gradient_checkpointing"
        case loggingSteps = "logging_steps", evalSteps = "eval_steps", saveSteps = "save_steps"
        case saveTotalLimit = "save_total_limit"
        case mmluEval = "mmlu_eval", mmluData = "mmlu_data", maxMMLUSamples = "max_mmlu_samples"
    }

    /// Other spellings of keys (qlora's and Hugging Face's) → the canonical key.
    static let aliases: [String: String] = [
        "model_name_or_path": "model", "dataset": "data", "dataset_format": "format", "eval_dataset": "eval_data",
        "output_dir": "output", "lora_rank": "lora_r", "r": "lora_r",
        "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
        "num_train_epochs": "epochs", "lr_scheduler_type": "lr_scheduler", "model_max_length": "max_seq_len",
        "max_seq_length": "max_seq_len", "bf16": "bf16", "train_on_inputs": "train_on_source",
        "quant_type": "quantize", "bnb_4bit_quant_type": "quantize", "bnb_4bit_use_double_quant": "double_quant",
        "bnb_4bit_compute_dtype": "compute_dtype", "bnb_4bit_blocksize": "quant_blocksize", "optim": "optimizer",
        "do_mmlu_eval": "mmlu_eval",
    ]

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var d = TrainingConfig()
        func get<T: Decodable>(_ k: CodingKeys, _ into: inout T) throws { if let v = try c.decodeIfPresent(T.self, forKey: k) { into = v } }
        func opt<T: Decodable>(_ k: CodingKeys, _ into: inout T?) throws { if let v = try c.decodeIfPresent(T.self, forKey: k) { into = v } }
        /// A setting with a fixed set of values, read as text and refused with the allowed values.
        func choice<T>(_ k: CodingKeys, _ parse: (String) -> T?, allowed: String) throws -> T? {
            guard let s = try c.decodeIfPresent(String.self, forKey: k) else { return nil }
            guard let v = parse(s) else { throw TrainError.invalidSetting("\(k.rawValue) must be \(allowed) (got \(s))") }
            return v
        }
        try opt(.model, &d.model); try opt(.data, &d.data); try opt(.evalData, &d.evalData)
        d.format = try choice(.format, DatasetFormat.init(rawValue:),
                              allowed: DatasetFormat.allCases.map(\.rawValue).joined(separator: ", ")) ?? d.format
        try get(.evalFraction, &d.evalFraction); try opt(.output, &d.output)
        d.dtype = try choice(.dtype, WeightDType.init(rawValue:), allowed: "f32 or bf16") ?? d.dtype
        try opt(.chatTemplate, &d.chatTemplate)
        d.quantize = try choice(.quantize, QuantMethod.init(rawValue:), allowed: "nf4, fp4 or int8") ?? d.quantize
        try get(.int8Threshold, &d.int8Threshold)
        try get(.doubleQuant, &d.doubleQuant); try get(.quantBlocksize, &d.quantBlocksize)
        d.computeDType = try choice(.computeDType, WeightDType.init(rawValue:), allowed: "f32 or bf16") ?? d.computeDType
        try get(.maxSeqLen, &d.maxSeqLen); try opt(.sourceMaxLen, &d.sourceMaxLen); try opt(.targetMaxLen, &d.targetMaxLen)
        try get(.trainOnSource, &d.trainOnSource); try get(.groupByLength, &d.groupByLength)
        try get(.loraR, &d.loraR); try get(.loraAlpha, &d.loraAlpha); try get(.loraDropout, &d.loraDropout)
        if let s = try? c.decode(String.self, forKey: .targetModules) {
            d.targetModules = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        } else { try get(.targetModules, &d.targetModules) }
        try get(.useRSLoRA, &d.useRSLoRA); try get(.useDoRA, &d.useDoRA)
        if let b = try? c.decode(Bool.self, forKey: .initLoRAWeights) { d.initLoRAWeights = b ? "true" : "false" } else { try get(.initLoRAWeights, &d.initLoRAWeights) }
        try opt(.layersToTransform, &d.layersToTransform)
        try get(.learningRate, &d.learningRate); try get(.lrScheduler, &d.lrScheduler); try get(.warmupSteps, &d.warmupSteps)
        try get(.warmupRatio, &d.warmupRatio); try get(.batchSize, &d.batchSize); try get(.gradAccum, &d.gradAccum)
        try opt(.maxSteps, &d.maxSteps); try get(.epochs, &d.epochs); try get(.maxGradNorm, &d.maxGradNorm)
        try get(.weightDecay, &d.weightDecay); try get(.adamBeta1, &d.adamBeta1); try get(.adamBeta2, &d.adamBeta2)
        try get(.adamEpsilon, &d.adamEpsilon); d.optimizer = try choice(.optimizer, OptimizerKind.init(name:),
                                 allowed: "adamw, paged_adamw, adamw_8bit or paged_adamw_8bit") ?? d.optimizer; try get(.seed, &d.seed); try get(.gradientCheckpointing, &d.gradientCheckpointing)
        try get(.loggingSteps, &d.loggingSteps); try get(.evalSteps, &d.evalSteps); try get(.saveSteps, &d.saveSteps)
        try opt(.saveTotalLimit, &d.saveTotalLimit)
        try get(.mmluEval, &d.mmluEval); try opt(.mmluData, &d.mmluData); try opt(.maxMMLUSamples, &d.maxMMLUSamples)
        if d.maxSteps == -1 { d.maxSteps = nil }   // HF's "not set"
        self = d
    }

    /// Reads a YAML (or JSON) run file. Unknown keys are an error naming the key (a typo would
    /// otherwise be silently ignored); qlora / HF aliases are mapped first; `bf16: true` means dtype bf16.
    /// Keys absent from the file keep their values in `base`.
    public static func load(yamlAt path: String, over base: TrainingConfig = TrainingConfig()) throws -> TrainingConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TrainError.invalidSetting("\(path): cannot read the file")
        }
        guard var dict = try RunFileYAML.values(text, path: path) as? [String: Any] else {
            throw TrainError.invalidSetting("\(path): expected a mapping of settings (key: value) at the top level")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        var canonical = (try JSONSerialization.jsonObject(with: try JSONEncoder().encode(base)) as? [String: Any]) ?? [:]
        if let bf16 = dict.removeValue(forKey: "bf16") as? Bool, bf16 { canonical["dtype"] = "bf16" }
        if let bits = dict.removeValue(forKey: "bits") {   // qlora: bits 4 = QLoRA (quant_type, default nf4)
            switch bits as? Int {
            case 4: if dict["quant_type"] == nil && dict["quantize"] == nil { canonical["quantize"] = "nf4" }
            case 8: canonical["quantize"] = "int8"   // qlora: bits 8 = load_in_8bit
            case 16, 32: break
            default: throw TrainError.invalidSetting("\(path): bits must be 4, 8, 16 or 32 (got \(bits))")
            }
        }
        for (k, v) in dict {
            let key = aliases[k] ?? k
            guard known.contains(key) else {
                let close = known.sorted().filter { $0.hasPrefix(String(key.prefix(4))) }
                throw TrainError.invalidSetting("\(path): unknown setting '\(k)'" + (close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)"))
            }
            canonical[key] = v
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: canonical)
            return try JSONDecoder().decode(TrainingConfig.self, from: data)
        } catch TrainError.invalidSetting(let message) {
            throw TrainError.invalidSetting("\(path): \(message)")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw TrainError.invalidSetting("\(path): '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' should be \(type)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw TrainError.invalidSetting("\(path): '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))': \(ctx.debugDescription)")
        }
    }

    /// Throws on settings that cannot run, naming the setting and the allowed values.
    public func validate() throws {
        func bad(_ s: String) -> TrainError { .invalidSetting(s) }
        if loraR < 1 { throw bad("lora_r must be at least 1 (got \(loraR))") }
        if !(loraAlpha > 0) { throw bad("lora_alpha must be positive (got \(loraAlpha))") }
        if !(loraDropout >= 0 && loraDropout < 1) { throw bad("lora_dropout must be in [0, 1) (got \(loraDropout))") }
        if !(learningRate > 0) { throw bad("learning_rate must be positive (got \(learningRate))") }
        if batchSize < 1 { throw bad("batch_size must be at least 1 (got \(batchSize))") }
        if gradAccum < 1 { throw bad("grad_accum must be at least 1 (got \(gradAccum))") }
        if let m = maxSteps, m < 1 { throw bad("max_steps must be at least 1 (got \(m))") }
        if maxSteps == nil && !(epochs > 0) { throw bad("epochs must be positive (got \(epochs))") }
        if warmupSteps < 0 || !(warmupRatio >= 0 && warmupRatio < 1) { throw bad("warmup_steps must be ≥ 0 and warmup_ratio in [0, 1)") }
        if maxSeqLen < 2 { throw bad("max_seq_len must be at least 2 (got \(maxSeqLen))") }
        if maxGradNorm < 0 { throw bad("max_grad_norm must be ≥ 0 (0 = no clipping)") }
        if !(evalFraction >= 0 && evalFraction < 1) { throw bad("eval_fraction must be in [0, 1)") }
        if !FourBitTensor.blocksizes.contains(quantBlocksize) {
            throw bad("quant_blocksize must be one of \(FourBitTensor.blocksizes.map(String.init).joined(separator: ", ")) (got \(quantBlocksize))")
        }
        if loggingSteps < 0 || evalSteps < 0 || saveSteps < 0 { throw bad("logging_steps, eval_steps and save_steps must be ≥ 0") }
        if let l = saveTotalLimit, l < 1 { throw bad("save_total_limit must be at least 1") }
        if targetModules.isEmpty { throw bad("target_modules is empty") }
        if mmluEval && mmluData == nil {
            throw bad("mmlu_eval needs mmlu_data: a qlora MMLU file of {subject, input, output} lines "
                + "(qlora's data/mmlu/zero_shot_mmlu_val.json) (--mmlu-data FILE)")
        }
        if let n = maxMMLUSamples, n < 1 { throw bad("max_mmlu_samples must be at least 1 (got \(n))") }
    }

    /// The quantization of the frozen block linears (4-bit or LLM.int8), when `quantize` is set.
    public var quantization: QuantizationConfig? {
        guard let method = quantize else { return nil }
        return QuantizationConfig(method: method, blocksize: quantBlocksize, doubleQuant: doubleQuant,
                                  computeDType: computeDType ?? dtype, int8Threshold: int8Threshold)
    }

    /// The PEFT adapter config these settings describe.
    public var adapterConfig: AdapterConfig {
        let targets: AdapterConfig.Targets = targetModules == ["all-linear"] ? .allLinear : .names(targetModules)
        var c = AdapterConfig(r: loraR, loraAlpha: loraAlpha, targetModules: targets, loraDropout: loraDropout,
                              useRSLoRA: useRSLoRA, useDoRA: useDoRA)
        c.initLoRAWeights = initLoRAWeights
        c.layersToTransform = layersToTransform
        c.baseModelNameOrPath = model ?? ModelStore.defaultModelName
        return c
    }

    /// The settings as pretty, key-sorted JSON (the run directory's `train_config.json`).
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }
}

/// A run file's YAML as plain values (String, Int, Double, Bool, NSNull, arrays, `[String: Any]`),
/// built from Yams' node tree rather than by `Yams.load`, which traps on a mapping key that is not
/// a scalar (the fuzzer's `- ? - 3`) and on a base-60 integer that overflows. Keys must be plain names (Yams' parser refuses repeated
/// ones); at most 100 000 values are made (an alias repeats a subtree, and aliases of aliases
/// grow exponentially).
enum RunFileYAML {
    static let valueLimit = 100_000

    static func values(_ text: String, path: String) throws -> Any? {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TrainError.invalidSetting("\(path): not valid YAML: \(error)")
        }
        guard let node else { return nil }
        var budget = valueLimit
        return try convert(node, path: path, budget: &budget)
    }

    private static func convert(_ node: Node, path: String, budget: inout Int) throws -> Any {
        budget -= 1
        guard budget >= 0 else {
            throw TrainError.invalidSetting("\(path): more than \(valueLimit) values (aliases repeating parts of the file?); "
                                            + "a run file is a short mapping of settings")
        }
        func place(_ n: Node) -> String { n.mark.map { "\(path):\($0.line):\($0.column)" } ?? path }
        switch node {
        case .scalar(let scalar):
            // YAML 1.1's base-60 integers (`1:30`) overflow and trap in Yams; read them as text, as YAML 1.2 does.
            if node.tag.rawValue == Tag.Name.int.rawValue && scalar.string.contains(":") { return scalar.string }
            return Constructor.default.any(from: node)
        case .sequence(let items):
            return try items.map { try convert($0, path: path, budget: &budget) }
        case .mapping(let pairs):
            var out: [String: Any] = [:]
            for (key, value) in pairs {
                guard case .scalar(let k) = key else {
                    throw TrainError.invalidSetting("\(place(key)): a key must be a plain name, not a list or a mapping")
                }
                out[k.string] = try convert(value, path: path, budget: &budget)
            }
            return out
        case .alias:
            throw TrainError.invalidSetting("\(place(node)): aliases (*name) are not supported in run files")
        }
    }
}
