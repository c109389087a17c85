import FinchCore
import FinchLoRA
import FinchModels
import FinchQuant
import FinchFormats
import FinchNet
import Foundation

/// Every setting of a training run, with the snake_case keys of its YAML file (`finch train
/// --config run.yaml`) and of the resolved `train_config.json` written into the run directory.
/// Names follow Hugging Face's TrainingArguments and PEFT's LoraConfig; qlora's flag spellings
/// are accepted as aliases when read (`per_device_train_batch_size`, `gradient_accumulation_steps`,
/// `lora_r`, `num_train_epochs`, `source_max_len`, `target_max_len`, `dataset`, `dataset_format`,
/// `output_dir`, `model_name_or_path`, `max_grad_norm`, `lr_scheduler_type`, …).
public struct TrainingConfig: Codable, Sendable, Equatable {
    // What to train on.
    public var model: String? = nil
    /// A Hub repository's GGUF file (its name or quant type) when `model` is a Hub id.
    public var ggufFile: String? = nil
    /// `model` as ModelStore resolves it: with `ggufFile` as a Hub id's `:FILE`.
    public var modelSpec: String? {
        guard let ggufFile, let model else { return model }
        return model + ":" + ggufFile
    }
    public var data: String? = nil
    /// The data format (nil = detected from the file).
    public var format: DatasetFormat? = nil
    public var evalData: String? = nil
    /// Held-out fraction of `data` for evaluation when there is no `eval_data` (0 = none).
    public var evalFraction: Double = 0
    public var output: String? = nil
    /// Storage / compute type of the frozen weights: f32, or bf16 (bf16 products, f32 accumulation and adapters).
    public var dtype: WeightDType? = nil
    /// A Jinja chat template file used instead of the model's own (for models whose files carry none).
    public var chatTemplate: String? = nil
    /// The compute backend (nil: `FINCH_BACKEND`, else cpu).
    public var backend: BackendKind? = nil
    /// The frozen base's products: in its own precision, or int8 (`Int8Product`).
    public var quantCompute: QuantCompute = .exact

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

    // Preference training (TRL's DPOConfig, KTOConfig, CPOConfig, ORPOConfig).
    /// sft (the default), dpo, simpo, orpo or kto.
    public var method: TrainingMethod = .sft
    public var beta: Double = 0.1
    /// The method's `loss_type` (nil: its default, sigmoid for dpo and kto for kto); see
    /// `dpoLossType` and `ktoLossType`.
    public var lossType: String? = nil
    /// KTO: the weights of desirable and undesirable completions' losses.
    public var desirableWeight: Double = 1
    public var undesirableWeight: Double = 1
    public var labelSmoothing: Double = 0
    /// DiscoPOP's τ (TRL's `discopop_tau`).
    public var discopopTau: Double = 0.05
    /// SimPO's target margin γ (TRL's `simpo_gamma`).
    public var simpoGamma: Double = 0.5
    /// SimPO: the weight of the chosen answers' NLL (TRL's `cpo_alpha`; 0 = SimPO itself).
    public var cpoAlpha: Double = 0
    /// log π_ref = 0 (no reference pass).
    public var referenceFree: Bool = false
    public var precomputeRefLogProbs: Bool = false
    /// A PEFT adapter (an SFT run's) to continue training from and to use as the reference.
    public var refAdapter: String? = nil
    /// Longest prompt + answer in tokens (nil: no limit).
    public var maxLength: Int? = 1024
    public var truncationMode: TruncationMode = .keepStart
    /// Encoder-decoder preference training (simpo, orpo): longest answer in tokens (nil: TRL's 128).
    public var maxCompletionLength: Int? = nil
    /// Preference methods train without the adapters' dropout, as TRL's `disable_dropout` (default true).
    public var disableDropout: Bool = true

    // LoRA (PEFT's LoraConfig).
    public var loraR: Int = 8
    public var loraAlpha: Double = 16
    public var loraDropout: Double = 0.05
    /// Module names, or ["all-linear"].
    public var targetModules: [String] = ["all-linear"]
    /// PEFT's `modules_to_save`: modules trained in full beside the adapter (embed_tokens, lm_head).
    public var modulesToSave: [String] = []
    /// PEFT's `trainable_token_indices`: rows of the embedding trained (token ids).
    public var trainableTokenIndices: [Int]? = nil
    /// Tokens added to the tokenizer as special tokens (transformers' `add_special_tokens`) and as
    /// plain ones (`add_tokens`); the embedding and head grow to hold them (`resize_token_embeddings`).
    public var addSpecialTokens: [String] = []
    public var addTokens: [String] = []
    /// Whether the `<|…|>` markers of a `chat_template` file that the vocabulary lacks are added as special tokens.
    public var addChatTemplateTokens: Bool = true
    /// TRL's `eos_token`: the tokenizer's end-of-sequence token for the run (appended to examples, generation's stop),
    /// saved with the adapter's tokenizer.
    public var eosToken: String? = nil
    public var useRSLoRA: Bool = false
    public var useDoRA: Bool = false
    public var initLoRAWeights: LoRAInit = .kaimingUniform
    /// LoftQ's rounds (`init_lora_weights` loftq).
    public var loftqIter: Int = 1
    /// EVA's settings (`init_lora_weights` eva; PEFT's EvaConfig).
    public var evaRho: Double = 2
    public var evaTau: Double = 0.99
    public var evaUseLabelMask: Bool = true
    public var evaWhiten: Bool = false
    public var evaAdjustScalingFactors: Bool = true
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
    /// LoRA+ (`loraplus_lr_ratio`): B's learning rate this many times A's; nil = plain LoRA. See `LoRAPlus`.
    public var loraPlusLRRatio: Double? = nil
    /// LoRA+: the embedding adapters' learning rate (PEFT's default 1e-6).
    public var loraPlusLREmbedding: Double = 1e-6
    /// LoRA+: the groups' weight decay (PEFT's `loraplus_weight_decay`); nil = `weightDecay`.
    public var loraPlusWeightDecay: Double? = nil
    public var adamBeta1: Double = 0.9
    public var adamBeta2: Double = 0.999
    public var adamEpsilon: Double = 1e-8
    /// LoRA+'s grouping of the adapter's tensors, when `loraPlusLRRatio` is set.
    public var loraPlus: LoRAPlus? {
        loraPlusLRRatio.map { LoRAPlus(lrRatio: $0, embeddingLearningRate: loraPlusLREmbedding, weightDecay: loraPlusWeightDecay ?? weightDecay) }
    }
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
    /// Where metrics go besides metrics.jsonl and loss.svg (transformers' `report_to`): `tensorboard`
    /// (or `all`); `none` or empty: nowhere else.
    public var reportTo: [String] = []
    /// `report_to` names TensorBoard.
    public var reportsToTensorBoard: Bool { reportTo.contains { $0 == "tensorboard" || $0 == "all" } }
    static let reportTargets = ["tensorboard", "all", "none"]

    /// Prompts the model answers at every evaluation, into samples.jsonl (the live page shows them);
    /// run by the evaluator the caller attaches (FinchEval's `SampleAnswersEvaluator`).
    public var samplePrompts: String? = nil
    public var sampleMaxTokens: Int = 64

    // MMLU at every evaluation (qlora's --do_mmlu_eval); run by the evaluator the caller attaches.
    public var mmluEval: Bool = false
    /// qlora's MMLU file (e.g. data/mmlu/zero_shot_mmlu_val.json).
    public var mmluData: String? = nil
    /// Only the first N items (qlora's max_mmlu_samples).
    public var maxMMLUSamples: Int? = nil

    public init() {}

    /// Every setting: key, other spellings, flags, help and check (the type and default are the
    /// properties above). A new setting is a property plus one entry here (and, to have a flag, one
    /// `@Option` in Sources/finch/Train.swift that names it by key path).
    /// Why `tokens` cannot be added in a run of config `c` (nil: they can).
    static func addedTokensProblem(_ tokens: [String], _ c: TrainingConfig) -> String? {
        if tokens.contains(where: \.isEmpty) { return "an added token is empty" }
        if !tokens.isEmpty && c.initLoRAWeights == .loftq { return "adding tokens with init_lora_weights loftq is not supported yet" }
        return nil
    }

    public static let settings: [TrainingSetting] = [
        .make("model", \.model, aliases: ["model_name_or_path"], flags: ["model", "model_name_or_path"],
              help: "Base model: GGUF file, HF directory, Hugging Face Hub id (ORG/NAME[@REVISION], from the Hugging Face cache or downloaded into it) or known name (default smollm2-135m)."),
        .make("gguf_file", \.ggufFile, flags: ["gguf-file", "gguf_file"],
              help: "For a Hub id whose repository holds several GGUF files: the one to use, by name or quant type (e.g. Q4_K_M).",
              check: { v, c in v == nil || c.model.map { HubRepoID($0) != nil } == true ? nil : "gguf_file chooses a file of a Hub repository: give model as ORG/NAME" }),
        .make("data", \.data, aliases: ["dataset"], flags: ["data", "dataset"], help: "Training data file (.json, .jsonl, .txt)."),
        .make("format", \.format, aliases: ["dataset_format"], flags: ["format", "dataset_format"],
              help: "alpaca | input-output | oasst | self-instruct | chat | text (default: detected)."),
        .make("eval_data", \.evalData, aliases: ["eval_dataset"], flags: ["eval-data", "eval_dataset"], help: "Held-out data file for evaluation."),
        .make("eval_fraction", \.evalFraction, help: "Hold out this fraction of --data for evaluation when there is no --eval-data.",
              check: { v, _ in v >= 0 && v < 1 ? nil : "eval_fraction must be in [0, 1)" }),
        .make("output", \.output, aliases: ["output_dir"], flags: ["output", "output_dir"], help: "Run directory (the adapter lands here)."),
        .make("dtype", \.dtype, help: "f32, or bf16 (bf16 weights and products with f32 accumulation; f32 adapters). Without it a quantized GGUF's linear weights stay in their blocks (products in f32); with it they are dequantized to this type."),
        .make("quant_compute", \.quantCompute,
              help: "The frozen base's products: exact (in the weights' own precision; quantized weights expanded to f32) or int8 (int8 weights with a scale per output feature, activations quantized per row as each product runs, int32 sums: SwitchBack's scheme; decoding keeps float kernels)."),
        .make("backend", \.backend,
              help: "Compute backend: cpu (Finch's kernels) or reference (plain Swift, float64 sums: slow, for checking); default FINCH_BACKEND, else cpu."),
        .make("chat_template", \.chatTemplate,
              help: "A Jinja chat template file to use instead of the model's own (for models whose files carry none)."),

        .make("quantize", \.quantize, aliases: ["quant_type", "bnb_4bit_quant_type"], flags: ["quantize", "quant_type"],
              help: "QLoRA: quantize the frozen block linears as they load to nf4 or fp4 (4-bit), or int8 (LLM.int8); bitsandbytes' formats, bit for bit."),
        .make("llm_int8_threshold", \.int8Threshold, flags: ["int8-threshold", "llm_int8_threshold"],
              help: "With --quantize int8: the outlier threshold (default 6; 0 = no outliers)."),
        .make("double_quant", \.doubleQuant, aliases: ["bnb_4bit_use_double_quant"], flags: ["double-quant", "double_quant"],
              help: "QLoRA: double-quantize the 4-bit scales (8-bit, blocks of 256)."),
        .make("quant_blocksize", \.quantBlocksize, aliases: ["bnb_4bit_blocksize"], help: "QLoRA: values per 4-bit block (32 … 4096, default 64).",
              check: { v, _ in
                  FourBitTensor.blocksizes.contains(v) ? nil
                      : "quant_blocksize must be one of \(FourBitTensor.blocksizes.map(String.init).joined(separator: ", ")) (got \(v))"
              }),
        .make("compute_dtype", \.computeDType, aliases: ["bnb_4bit_compute_dtype"],
              help: "QLoRA: precision of the 4-bit layers' products, f32 or bf16 (default: --dtype)."),

        .make("max_seq_len", \.maxSeqLen, aliases: ["model_max_length", "max_seq_length"], flags: ["max-seq-len", "model_max_length"],
              help: "Longest sequence in tokens.", check: { v, _ in v >= 2 ? nil : "max_seq_len must be at least 2 (got \(v))" }),
        .make("source_max_len", \.sourceMaxLen, flags: ["source-max-len", "source_max_len"], help: "Longest prompt in tokens."),
        .make("target_max_len", \.targetMaxLen, flags: ["target-max-len", "target_max_len"], help: "Longest response in tokens."),
        .make("train_on_source", \.trainOnSource, aliases: ["train_on_inputs"], flags: ["train-on-source", "train_on_source"],
              help: "Also take the loss on the prompt."),
        .make("group_by_length", \.groupByLength, flags: ["group-by-length", "group_by_length"],
              help: "Batch sequences of similar length together."),

        .make("method", \.method, help: "The objective: sft (supervised fine-tuning, the default), dpo, simpo or orpo (preference pairs: {prompt, chosen, rejected} as text or message lists, TRL's formats), or kto (unpaired {prompt, completion, label}, or pairs).",
              check: { v, c in
                  guard v == .kto else { return nil }
                  if c.groupByLength { return "method kto takes its batches in file order (TRL's sequential sampling: each example's KL completion comes from its batch); remove group_by_length" }
                  if c.referenceFree { return "reference_free is not a setting of KTO (TRL's KTOTrainer always has a reference)" }
                  if c.ktoLossType == .kto && c.batchSize < 2 { return "method kto needs batch_size ≥ 2: the KL estimate pairs each prompt with another completion of its batch (TRL refuses 1 too)" }
                  return nil
              }),
        .make("beta", \.beta, help: "Preference training: β, how far the policy may move from the reference (TRL's default 0.1; for ipo its τ; for orpo the odds-ratio term's weight λ).",
              check: { v, _ in v > 0 ? nil : "beta must be positive (got \(v))" }),
        .make("loss_type", \.lossType,
              help: "The loss, as TRL 1.16 defines it. dpo: sigmoid (the default), hinge, ipo, robust, exo_pair, nca_pair, bco_pair, sppo_hard, apo_zero, apo_down, discopop, sigmoid_norm or sft; kto: kto (the default) or apo_zero_unpaired.",
              check: { v, c in
                  guard let v else { return nil }
                  switch c.method {
                  case .dpo:
                      guard let t = DPOLossType(rawValue: v) else {
                          return "loss_type \(v) is not one of DPO's: \(DPOLossType.allCases.map(\.rawValue).joined(separator: ", "))"
                      }
                      return t == .exoPair && c.labelSmoothing == 0 ? "loss_type exo_pair needs label_smoothing > 0 (its ε; EXO's authors use 1e-3)" : nil
                  case .kto:
                      return KTOLossType(rawValue: v) == nil
                          ? "loss_type \(v) is not one of KTO's: \(KTOLossType.allCases.map(\.rawValue).joined(separator: ", "))" : nil
                  case .sft, .simpo, .orpo:
                      return "loss_type is a setting of dpo and kto; method \(c.method.rawValue) has one loss"
                  }
              }),
        .make("desirable_weight", \.desirableWeight,
              help: "KTO: the weight of desirable completions' losses (TRL's default 1; raise it when they are fewer).",
              check: { v, c in v <= 0 ? "desirable_weight must be positive (got \(v))" : v != 1 && c.method != .kto ? "desirable_weight is a setting of KTO (method kto)" : nil }),
        .make("undesirable_weight", \.undesirableWeight,
              help: "KTO: the weight of undesirable completions' losses (TRL's default 1).",
              check: { v, c in v <= 0 ? "undesirable_weight must be positive (got \(v))" : v != 1 && c.method != .kto ? "undesirable_weight is a setting of KTO (method kto)" : nil }),
        .make("discopop_tau", \.discopopTau, help: "DPO's discopop loss: τ (TRL's default 0.05).",
              check: { v, _ in v > 0 ? nil : "discopop_tau must be positive (got \(v))" }),
        .make("label_smoothing", \.labelSmoothing,
              help: "Robust DPO and SimPO: the probability that a preference label is flipped, in [0, 0.5).",
              check: { v, c in
                  !(v >= 0 && v < 0.5) ? "label_smoothing must be in [0, 0.5) (got \(v))"
                      : v > 0 && c.method == .dpo && c.dpoLossType != .robust && c.dpoLossType != .exoPair
                          ? "label_smoothing is used by DPO's loss_types robust and exo_pair only (loss_type is \(c.dpoLossType.rawValue))"
                          : v > 0 && (c.method == .orpo || c.method == .kto)
                              ? "label_smoothing is not a setting of \(c.method == .orpo ? "ORPO (TRL's ORPOTrainer" : "KTO (TRL's KTOTrainer") has none)" : nil
              }),
        .make("simpo_gamma", \.simpoGamma, help: "SimPO: the target reward margin γ (TRL's default 0.5)."),
        .make("cpo_alpha", \.cpoAlpha,
              help: "SimPO: the weight of the NLL of the chosen answers added to the loss (TRL's cpo_alpha; 0, the default, is SimPO itself).",
              check: { v, _ in v >= 0 ? nil : "cpo_alpha must be ≥ 0 (got \(v))" }),
        .make("reference_free", \.referenceFree, help: "Preference training without a reference model (log π_ref = 0).",
              check: { v, c in v && !c.method.isPreference ? "reference_free is a setting of preference training (method dpo)" : nil }),
        .make("precompute_ref_log_probs", \.precomputeRefLogProbs, flags: ["precompute-ref-log-probs", "precompute-ref-logps"],
              help: "Compute the reference's log-probabilities of every pair once before training instead of at each step.",
              check: { v, c in v && (!c.method.isPreference || c.method == .simpo || c.method == .orpo) ? "precompute_ref_log_probs is a setting of preference training (dpo, kto)" : nil }),
        .make("ref_adapter", \.refAdapter,
              help: "A PEFT adapter directory (an SFT run's) that the preference run continues from and that serves, frozen, as the reference.",
              check: { v, c in
                  v == nil ? nil : !c.method.isPreference ? "ref_adapter is a setting of preference training (method dpo)"
                      : c.method != .dpo && c.method != .kto ? "ref_adapter is a setting of DPO and KTO; \(c.method.rawValue) has no reference model"
                      : c.referenceFree ? "ref_adapter and reference_free exclude each other: a reference-free run has no reference" : nil
              }),
        .make("max_length", \.maxLength,
              help: "Preference training: longest prompt + answer in tokens (TRL's default 1024; null: no limit).",
              check: { v, _ in v.map { $0 >= 2 ? nil : "max_length must be at least 2 (got \($0))" } ?? nil }),
        .make("truncation_mode", \.truncationMode,
              help: "Preference training: keep_start (the default; a pair whose prompt fills max_length is dropped) or keep_end (DPO only).",
              check: { v, c in
                  v == .keepEnd && (c.method == .simpo || c.method == .orpo || c.method == .kto)
                      ? "truncation_mode keep_end is DPO's; \(c.method.rawValue) cuts the answer (keep_start), as TRL's \(c.method == .orpo ? "ORPOTrainer" : c.method == .kto ? "KTOTrainer" : "CPOTrainer") does" : nil
              }),
        .make("max_completion_length", \.maxCompletionLength,
              help: "Encoder-decoder preference training (simpo, orpo on T5): longest answer in tokens, EOS included (TRL's default 128).",
              check: { v, c in
                  v.map { $0 < 2 ? "max_completion_length must be at least 2 (got \($0))"
                      : c.method != .simpo && c.method != .orpo ? "max_completion_length is a setting of encoder-decoder simpo and orpo" : nil } ?? nil
              }),
        .make("disable_dropout", \.disableDropout,
              help: "Preference training without the adapters' dropout (TRL's default true)."),

        .make("lora_r", \.loraR, aliases: ["lora_rank", "r"], flags: ["lora-r", "lora_r"], help: "LoRA rank.",
              check: { v, _ in v >= 1 ? nil : "lora_r must be at least 1 (got \(v))" }),
        .make("lora_alpha", \.loraAlpha, flags: ["lora-alpha", "lora_alpha"], help: "LoRA alpha (scaling = alpha / r).",
              check: { v, _ in v > 0 ? nil : "lora_alpha must be positive (got \(v))" }),
        .make("lora_dropout", \.loraDropout, flags: ["lora-dropout", "lora_dropout"], help: "Dropout on the adapter's input.",
              check: { v, _ in v >= 0 && v < 1 ? nil : "lora_dropout must be in [0, 1) (got \(v))" }),
        .make("target_modules", \.targetModules, flags: ["target-modules", "target_modules"],
              help: "Comma-separated module names, or all-linear.", check: { v, _ in v.isEmpty ? "target_modules is empty" : nil }),
        .make("modules_to_save", \.modulesToSave, aliases: ["lora_modules_to_save"], flags: ["modules-to-save", "modules_to_save"],
              help: "Comma-separated modules trained in full beside the adapter, as PEFT's modules_to_save: embed_tokens, lm_head (the embedding and the head; a trainable copy of each is saved in the adapter)."),
        .make("trainable_token_indices", \.trainableTokenIndices, flags: ["trainable-token-indices", "trainable_token_indices"],
              help: "Comma-separated token ids whose embedding rows are trained (and a tied head's), as PEFT's trainable_token_indices; saved in the adapter.",
              check: { v, c in
                  guard let v else { return nil }
                  if v.isEmpty { return "trainable_token_indices is empty" }
                  return nil
              }),
        .make("add_special_tokens", \.addSpecialTokens, flags: ["add-special-tokens", "add_special_tokens"],
              help: "Comma-separated tokens added to the tokenizer as special tokens (transformers' add_special_tokens): the embedding and the head grow to hold them, new rows drawn around the old rows' mean as resize_token_embeddings does; the tokenizer and the grown rows are saved with the adapter. Train them with --modules-to-save embed_tokens,lm_head or --trainable-token-indices.",
              check: { v, c in addedTokensProblem(v, c) }),
        .make("add_tokens", \.addTokens, flags: ["add-tokens", "add_tokens"],
              help: "Comma-separated tokens added to the tokenizer as plain (normalized, not special) tokens (transformers' add_tokens); the vocabulary grows as with --add-special-tokens.",
              check: { v, c in addedTokensProblem(v, c) }),
        .make("add_chat_template_tokens", \.addChatTemplateTokens, flags: ["no-chat-template-tokens"],
              help: "Do not add the <|…|> markers of a --chat-template file that the vocabulary lacks (by default they are added as special tokens, growing the vocabulary)."),
        .make("eos_token", \.eosToken, flags: ["eos-token", "eos_token"],
              help: "The end-of-sequence token for the run (TRL's eos_token), e.g. an added <|end|>: the data's EOS, generation's stop; saved with the adapter's tokenizer."),
        .make("use_rslora", \.useRSLoRA, flags: ["use-rslora", "use_rslora"], help: "Scale by alpha / sqrt(r)."),
        .make("use_dora", \.useDoRA, flags: ["use-dora", "use_dora"], help: "Weight-decomposed LoRA (DoRA)."),
        .make("init_lora_weights", \.initLoRAWeights,
              help: "How a new adapter starts: true (PEFT's default: kaiming-uniform A, zero B), gaussian (A from N(0, 1/r)), olora (A, B from the base weight's QR), pissa (from its SVD: the principal directions) or pissa_niter_K (from K iterations of the randomized SVD); with olora / pissa the base keeps the residual and the saved adapter is converted to a plain LoRA of rank 2r on the original base, as PEFT converts it. loftq (with --quantize nf4, fp4 or int8): the base quantized in loftq_iter rounds against the adapter fitted by SVD to what quantization lost; the quantized base is saved beside the adapter (loftq-base/). eva: A from the principal components of each layer's inputs over the training batches (an incremental PCA until they settle, eva_tau), the ranks redistributed by explained variance (up to lora_r · eva_rho, rank 0 drops a layer), B zero, as PEFT's EVA.",
              check: { v, c in
                  if v == .eva {
                      if c.method.isPreference { return "init_lora_weights eva with method \(c.method.rawValue) is not supported yet; start from true" }
                      if c.useDoRA { return "init_lora_weights eva with use_dora: start DoRA from true or gaussian" }
                      return nil
                  }
                  if v == .loftq {
                      if c.quantize == nil { return "init_lora_weights loftq quantizes the base: give --quantize nf4 (PEFT's LoftQ), fp4 or int8" }
                      if c.useDoRA { return "init_lora_weights loftq with use_dora: start DoRA from true or gaussian" }
                      if c.method == .dpo || c.method == .kto {
                          return "init_lora_weights loftq with method \(c.method.rawValue): the reference (the base with the adapter off) would be the LoftQ-quantized base, not the model; use true or gaussian"
                      }
                      return nil
                  }
                  guard v.isDecomposition else { return nil }
                  if c.useDoRA { return "init_lora_weights \(v.rawValue) with use_dora: start DoRA from true or gaussian" }
                  if c.method == .dpo || c.method == .kto {
                      return "init_lora_weights \(v.rawValue) with method \(c.method.rawValue): the reference (the base with the adapter off) would be the residual base, not the model; use true or gaussian"
                  }
                  return nil
              }),
        .make("eva_rho", \.evaRho, aliases: ["rho"], flags: ["eva-rho", "eva_rho"],
              help: "EVA (init_lora_weights eva): a layer's rank is at most round(lora_r · rho) after the redistribution (PEFT's EvaConfig.rho, default 2; 1 keeps every rank).",
              check: { v, _ in v >= 1 ? nil : "eva_rho must be at least 1 (got \(v))" }),
        .make("eva_tau", \.evaTau, aliases: ["tau"], flags: ["eva-tau", "eva_tau"],
              help: "EVA: a layer's components count as settled when each points within this cosine similarity of the previous batch's (default 0.99).",
              check: { v, _ in v >= 0 && v <= 1 ? nil : "eva_tau must be in [0, 1] (got \(v))" }),
        .make("eva_use_label_mask", \.evaUseLabelMask, aliases: ["use_label_mask"],
              help: "EVA: only the tokens that take a loss feed the analysis (default true)."),
        .make("eva_whiten", \.evaWhiten, aliases: ["whiten"],
              help: "EVA: divide A's rows by the square root of their singular values (default false)."),
        .make("eva_adjust_scaling_factors", \.evaAdjustScalingFactors, aliases: ["adjust_scaling_factors"],
              help: "EVA: scale a layer's lora_alpha with its new rank (default true), so every layer keeps alpha / r."),
        .make("loftq_iter", \.loftqIter, flags: ["loftq-iter", "loftq_iter"],
              help: "Rounds of LoftQ's alternating quantization and SVD (init_lora_weights loftq; PEFT's LoftQConfig.loftq_iter).",
              check: { v, _ in v >= 1 ? nil : "loftq_iter must be at least 1 (got \(v))" }),
        .make("layers_to_transform", \.layersToTransform, help: "Only these layer indices get adapters (default: all)."),

        .make("learning_rate", \.learningRate, flags: ["learning-rate", "learning_rate"], help: "Peak learning rate.",
              check: { v, _ in v > 0 ? nil : "learning_rate must be positive (got \(v))" }),
        .make("lr_scheduler", \.lrScheduler, aliases: ["lr_scheduler_type"], flags: ["lr-scheduler", "lr_scheduler_type"],
              help: "constant | linear | cosine."),
        .make("warmup_steps", \.warmupSteps, flags: ["warmup-steps", "warmup_steps"], help: "Linear warmup steps.",
              check: { v, _ in v >= 0 ? nil : "warmup_steps must be ≥ 0 and warmup_ratio in [0, 1)" }),
        .make("warmup_ratio", \.warmupRatio, flags: ["warmup-ratio", "warmup_ratio"], help: "Warmup as a fraction of all steps.",
              check: { v, _ in v >= 0 && v < 1 ? nil : "warmup_steps must be ≥ 0 and warmup_ratio in [0, 1)" }),
        .make("batch_size", \.batchSize, aliases: ["per_device_train_batch_size"], flags: ["batch-size", "per_device_train_batch_size"],
              help: "Sequences per micro-batch.", check: { v, _ in v >= 1 ? nil : "batch_size must be at least 1 (got \(v))" }),
        .make("grad_accum", \.gradAccum, aliases: ["gradient_accumulation_steps"], flags: ["grad-accum", "gradient_accumulation_steps"],
              help: "Micro-batches per optimizer step.", check: { v, _ in v >= 1 ? nil : "grad_accum must be at least 1 (got \(v))" }),
        .make("max_steps", \.maxSteps, flags: ["max-steps", "max_steps"], help: "Optimizer steps (overrides --epochs).",
              check: { v, _ in v.map { $0 >= 1 ? nil : "max_steps must be at least 1 (got \($0))" } ?? nil }),
        .make("epochs", \.epochs, aliases: ["num_train_epochs"], flags: ["epochs", "num_train_epochs"], help: "Epochs over the data.",
              check: { v, c in c.maxSteps != nil || v > 0 ? nil : "epochs must be positive (got \(v))" }),
        .make("max_grad_norm", \.maxGradNorm, flags: ["max-grad-norm", "max_grad_norm"], help: "Clip the gradient norm (0 = off).",
              check: { v, _ in v >= 0 ? nil : "max_grad_norm must be ≥ 0 (0 = no clipping)" }),
        .make("weight_decay", \.weightDecay, flags: ["weight-decay", "weight_decay"], help: "AdamW weight decay."),
        .make("loraplus_lr_ratio", \.loraPlusLRRatio, flags: ["loraplus-lr-ratio", "loraplus_lr_ratio"],
              help: "LoRA+: B's learning rate this many times A's (PEFT's create_loraplus_optimizer; the paper suggests 16).",
              check: { v, _ in v.map { $0 > 0 } ?? true ? nil : "loraplus_lr_ratio must be positive (got \(v!))" }),
        .make("loraplus_lr_embedding", \.loraPlusLREmbedding, flags: ["loraplus-lr-embedding", "loraplus_lr_embedding"],
              help: "LoRA+: the learning rate of adapters on embeddings (PEFT's default 1e-6).",
              check: { v, c in v < 0 ? "loraplus_lr_embedding must be ≥ 0 (got \(v))"
                  : v != 1e-6 && c.loraPlusLRRatio == nil ? "loraplus_lr_embedding is a setting of LoRA+: set loraplus_lr_ratio" : nil }),
        .make("loraplus_weight_decay", \.loraPlusWeightDecay, flags: ["loraplus-weight-decay", "loraplus_weight_decay"],
              help: "LoRA+: the adapter groups' weight decay (PEFT's loraplus_weight_decay); default: weight_decay.",
              check: { v, c in v.map { $0 < 0 } ?? false ? "loraplus_weight_decay must be ≥ 0"
                  : v != nil && c.loraPlusLRRatio == nil ? "loraplus_weight_decay is a setting of LoRA+: set loraplus_lr_ratio" : nil }),
        .make("adam_beta1", \.adamBeta1, help: "AdamW β1."),
        .make("adam_beta2", \.adamBeta2, help: "AdamW β2."),
        .make("adam_epsilon", \.adamEpsilon, help: "AdamW ε."),
        .make("optimizer", \.optimizer, aliases: ["optim"], flags: ["optimizer", "optim"],
              help: "adamw, paged_adamw (state in file-backed paged memory), adamw_8bit (bitsandbytes' 8-bit blockwise state) or paged_adamw_8bit."),
        .make("seed", \.seed, help: "Random seed (adapter init, batch order, dropout)."),
        .make("gradient_checkpointing", \.gradientCheckpointing, flags: ["gradient-checkpointing", "gradient_checkpointing"],
              help: "Recompute each block in backward: less memory, same gradients."),

        .make("logging_steps", \.loggingSteps, flags: ["logging-steps", "logging_steps"], help: "Write metrics every N steps.",
              check: { v, _ in v >= 0 ? nil : "logging_steps, eval_steps and save_steps must be ≥ 0" }),
        .make("eval_steps", \.evalSteps, flags: ["eval-steps", "eval_steps"], help: "Evaluate every N steps (0 = at the end).",
              check: { v, _ in v >= 0 ? nil : "logging_steps, eval_steps and save_steps must be ≥ 0" }),
        .make("save_steps", \.saveSteps, flags: ["save-steps", "save_steps"], help: "Checkpoint every N steps (0 = never).",
              check: { v, _ in v >= 0 ? nil : "logging_steps, eval_steps and save_steps must be ≥ 0" }),
        .make("save_total_limit", \.saveTotalLimit, flags: ["save-total-limit", "save_total_limit"], help: "Keep only the last N checkpoints.",
              check: { v, _ in v.map { $0 >= 1 ? nil : "save_total_limit must be at least 1" } ?? nil }),
        .make("report_to", \.reportTo, flags: ["report-to", "report_to"],
              help: "Also write the metrics for: tensorboard (event files under OUTPUT/runs; `tensorboard --logdir OUTPUT`), all (the same), or none.",
              check: { v, _ in
                  guard let other = v.first(where: { !reportTargets.contains($0) }) else { return nil }
                  return "report_to \(other) is not supported: Finch reports to tensorboard (or none); metrics.jsonl and loss.svg are always written"
              }),

        .make("mmlu_eval", \.mmluEval, aliases: ["do_mmlu_eval"], flags: ["mmlu-eval", "do_mmlu_eval"],
              help: "MMLU accuracy (qlora's style) at every evaluation, into metrics.jsonl and loss.svg.",
              check: { v, c in
                  v && c.mmluData == nil
                      ? "mmlu_eval needs mmlu_data: a qlora MMLU file of {subject, input, output} lines "
                          + "(qlora's data/mmlu/zero_shot_mmlu_val.json) (--mmlu-data FILE)" : nil
              }),
        .make("sample_prompts", \.samplePrompts, flags: ["sample-prompts", "sample_prompts"],
              help: "Prompts the model answers at every evaluation (greedy), into samples.jsonl and the live page (--ui): a text file of one prompt a line, or a data file in a training format."),
        .make("sample_max_tokens", \.sampleMaxTokens, flags: ["sample-max-tokens", "sample_max_tokens"],
              help: "Tokens each sample answer may have (default 64).",
              check: { v, _ in v >= 1 ? nil : "sample_max_tokens must be at least 1 (got \(v))" }),
        .make("mmlu_data", \.mmluData, help: "qlora MMLU file for --mmlu-eval (e.g. qlora's data/mmlu/zero_shot_mmlu_val.json)."),
        .make("max_mmlu_samples", \.maxMMLUSamples, flags: ["max-mmlu-samples", "max_mmlu_samples"],
              help: "Score only the first N MMLU items.",
              check: { v, _ in v.map { $0 >= 1 ? nil : "max_mmlu_samples must be at least 1 (got \($0))" } ?? nil }),
    ]

    /// The setting of a property (the CLI names its options by key path).
    public static func setting(_ keyPath: PartialKeyPath<TrainingConfig>) -> TrainingSetting? {
        settings.first { $0.keyPath == keyPath }
    }

    /// The setting a run-file key names (its own key or an alias).
    static func setting(key: String) -> TrainingSetting? {
        settings.first { $0.key == key || $0.aliases.contains(key) }
    }

    /// Sets the setting `key` from a run file's value at `place`; refuses an unknown key by name and a
    /// value of the wrong kind with what the setting takes. Run-file shorthands: `bf16: true` is
    /// `dtype: bf16`; qlora's `bits` 4 is `quantize: nf4` (unless the file names the type), 8 is int8.
    mutating func set(_ key: String, _ value: JSONValue, at place: SettingPlace, keysInFile: Set<String> = []) throws {
        switch key {
        case "bf16":
            guard let b = value.boolValue else { throw SettingError.wrongType(key: key, place: place, expected: "true or false", got: value) }
            if b { dtype = .bf16 }
            return
        case "bits":
            switch value.wholeNumberValue {
            case 4: if !keysInFile.contains("quant_type") && !keysInFile.contains("quantize") { quantize = .nf4 }
            case 8: quantize = .int8   // qlora: bits 8 = load_in_8bit
            case 16, 32: break
            default: throw SettingError.wrongType(key: key, place: place, expected: "4, 8, 16 or 32", got: value)
            }
            return
        default: break
        }
        guard let setting = Self.setting(key: key) else {
            let close = Self.settings.map(\.key).sorted().filter { $0.hasPrefix(String(key.prefix(4))) }
            throw SettingError.unknownKey(key: key, place: place, didYouMean: close)
        }
        guard setting.read(&self, value) else {
            throw SettingError.wrongType(key: setting.key, place: place, expected: setting.kind, got: value)
        }
        if setting.key == "max_steps" && maxSteps == -1 { maxSteps = nil }   // HF's "not set"
    }

    /// The settings as a JSON object, keys sorted; unset optional settings are left out.
    public var json: JSONValue {
        .object(Self.settings.map { (key: $0.key, value: $0.write(self)) }.filter { !$0.value.isNull }.sorted { $0.key < $1.key })
    }

    /// Settings from a JSON object (`train_config.json`, a checkpoint's state); keys absent keep their defaults.
    public init(json: JSONValue, source: String) throws {
        self.init()
        guard let members = json.objectValue else {
            throw SettingError.notAMapping(place: SettingPlace(file: source))
        }
        for (k, v) in members { try set(k, v, at: SettingPlace(file: source, key: k)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(JSONTree(json))
    }

    public init(from decoder: Decoder) throws {
        let tree = try decoder.singleValueContainer().decode(JSONTree.self)
        try self.init(json: tree.value, source: "train_config.json")
    }

    /// Reads a YAML (or JSON) run file over `base`: keys absent from the file keep their values in
    /// `base`. Unknown keys are an error naming the key and its line (a typo would otherwise be
    /// silently ignored); qlora / HF aliases are read as their setting.
    public static func load(yamlAt path: String, over base: TrainingConfig = TrainingConfig()) throws -> TrainingConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SettingError.unreadableFile(path: path)
        }
        let entries = try RunFileYAML.settings(text, path: path)
        var c = base
        let keys = Set(entries.map(\.key))
        // The shorthands first, so that a key the file also gives (dtype, quant_type) wins over them.
        let shorthand: Set<String> = ["bf16", "bits"]
        for e in entries.filter({ shorthand.contains($0.key) }) + entries.filter({ !shorthand.contains($0.key) }) {
            try c.set(e.key, e.value, at: e.place, keysInFile: keys)
        }
        return c
    }

    /// Throws on settings that cannot run, naming the setting and the allowed values.
    public func validate() throws {
        for s in Self.settings {
            if let why = s.problem(self) { throw SettingError.invalid(key: s.key, reason: why) }
        }
    }

    /// The quantization of the frozen block linears (4-bit or LLM.int8), when `quantize` is set.
    public var quantization: QuantizationConfig? {
        guard let method = quantize else { return nil }
        return QuantizationConfig(method: method, blocksize: quantBlocksize, doubleQuant: doubleQuant,
                                  computeDType: computeDType ?? dtype ?? .f32, int8Threshold: int8Threshold)
    }

    /// The PEFT adapter config these settings describe.
    public var adapterConfig: AdapterConfig {
        let targets: AdapterConfig.Targets = targetModules == ["all-linear"] ? .allLinear : .names(targetModules)
        var c = AdapterConfig(r: loraR, loraAlpha: loraAlpha, targetModules: targets, loraDropout: loraDropout,
                              useRSLoRA: useRSLoRA, useDoRA: useDoRA)
        c.initLoRAWeights = initLoRAWeights.rawValue
        c.modulesToSave = modulesToSave
        c.trainableTokenIndices = trainableTokenIndices
        if initLoRAWeights == .loftq { c.loftq = .init(bits: quantize == .int8 ? 8 : 4, iterations: loftqIter) }
        if initLoRAWeights == .eva {
            c.eva = .init(rho: evaRho, tau: evaTau, useLabelMask: evaUseLabelMask, whiten: evaWhiten, adjustScalingFactors: evaAdjustScalingFactors)
        }
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


extension TrainingConfig {
    /// DPO's loss type (`loss_type`, sigmoid when unset; checked by `validate`).
    public var dpoLossType: DPOLossType { lossType.flatMap(DPOLossType.init(rawValue:)) ?? .sigmoid }
    /// KTO's loss type (`loss_type`, kto when unset; checked by `validate`).
    public var ktoLossType: KTOLossType { lossType.flatMap(KTOLossType.init(rawValue:)) ?? .kto }
}
