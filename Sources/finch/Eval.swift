import ArgumentParser
import FinchEval
import FinchFormats
import FinchModels
import FinchTrain
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model (and adapter): perplexity, MMLU, preference pairs.",
        subcommands: [EvalPerplexity.self, EvalMMLU.self, EvalPreference.self])
}

struct EvalPerplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity with its standard error over a text file or a dataset; a JSON summary on stdout.",
        discussion: """
            A plain-text file is tokenized whole. A JSON / JSONL dataset in any format finch train reads is \
            tokenized as training would tokenize it for the model (template, EOS), every token counted: a \
            decoder-only model's examples are concatenated; an encoder-decoder model (T5) scores each target \
            given its source (transformers' loss with labels), every target token counted. Without --stride the token stream is cut into non-overlapping windows of --max-seq-len \
            tokens, each scored from its second token (llama.cpp-style chunks); with --stride S, transformers' \
            sliding window: windows of --max-seq-len tokens every S tokens, each scoring only new tokens.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "A text file, or a dataset in any format finch train reads.")
    var data: String
    @Option(name: .long, help: "Dataset format (default: detected from the file).")
    var format: DatasetFormat?
    @Option(name: .long, help: "Window length in tokens.")
    var maxSeqLen = 512
    @Option(name: .long, help: "Slide windows by this many tokens (transformers' strided protocol).")
    var stride: Int?

    func run() throws {
        let lm = try model.load()
        let method: Perplexity.Method = stride.map { .strided(maxSeqLen: maxSeqLen, stride: $0) } ?? .windows(maxSeqLen: maxSeqLen)
        let start = Date()
        let r = try Perplexity.evaluate(lm, file: data, format: format, method: method) { w, n in
            if w % 10 == 0 || w == n { stderrPrint("window \(w)/\(n)") }
        }
        let seconds = Date().timeIntervalSince(start)
        let line: JSONValue = .object([
            ("data", .string(data)), ("model", .string(lm.path)), ("adapter", model.adapter.map(JSONValue.string) ?? .null),
            ("protocol", .string(r.pairs ? "pairs" : stride == nil ? "windows" : "strided")), ("max_seq_len", .int(maxSeqLen)),
            ("stride", stride.map(JSONValue.int) ?? .null), ("tokens", .int(r.tokens)), (r.pairs ? "pairs" : "windows", .int(r.windows)),
            ("mean_nll", .double(r.meanNLL)), ("stderr", .double(r.standardError)), ("perplexity", .double(r.perplexity)),
            ("perplexity_error", .double(r.perplexityError)), ("tokens_per_s", .number(String(format: "%.1f", Double(r.tokens) / seconds))),
        ])
        print(line.serialized())
    }
}

struct EvalMMLU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmlu",
        abstract: "MMLU accuracy per subject, as qlora scores it or as lm-eval does; a JSON summary on stdout.",
        discussion: """
            Reads qlora's MMLU files as they are (JSON lines or an array of {"subject", "input", "output"}, e.g. \
            zero_shot_mmlu_val.json). --style qlora (qlora's --do_mmlu_eval): the largest of the logits of "A", \
            "B", "C", "D" after BOS + input; also qlora's mmlu_loss. --style harness (lm-eval): the largest \
            log-likelihood of " A" ... " D" after the input. The headline is qlora's: the mean of the subjects' \
            accuracies; the item-weighted accuracy is given too. --shots N puts N solved questions of the same \
            subject before each one (from --shots-data, MMLU's dev split in the same layout, or else the other \
            items of that subject).
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "qlora MMLU file (JSON lines or array of {subject, input, output}).")
    var data: String
    @Option(name: .long, help: "qlora (logits of A/B/C/D) or harness (log-likelihood of \" A\"..\" D\").")
    var style: MMLU.Style = .qlora
    @Option(name: .long, help: "Solved examples of the same subject before each question (0 or 5, usually).")
    var shots = 0
    @Option(name: .long, help: "Where the solved examples come from (default: the other items of --data).")
    var shotsData: String?
    @Option(name: .long, help: "Evaluate only the first N items (qlora's --max_mmlu_samples).")
    var maxSamples: Int?
    @Option(name: .long, help: "Items per forward pass.")
    var batchSize = 8
    @Option(name: .long, help: "Write one JSON line per item (prediction, scores) here.")
    var predictions: String?
    @Option(name: .long, help: "Write a bar chart of the subjects (SVG) here.")
    var chart: String?
    @Option(name: .long, help: "Also write the JSON summary to this file.")
    var output: String?

    func run() throws {
        var items = try MMLU.load(path: data)
        if let n = maxSamples { items = Array(items.prefix(max(0, n))) }
        items = try MMLU.withShots(items, shots: shots, pool: try shotsData.map { try MMLU.load(path: $0) })
        let lm = try model.load()
        let report = try MMLU.evaluate(lm, items: items, style: style, batchSize: batchSize) { d, n in
            if d % 80 < batchSize || d == n { stderrPrint("mmlu \(d)/\(n)") }
        }
        let summary = report.summaryJSON(extra: [
            ("data", .string(data)), ("model", .string(lm.path)), ("adapter", model.adapter.map { .string($0) } ?? .null),
            ("shots", .int(shots))])
        if let predictions { try AtomicFile.write(report.predictionLines(), to: predictions) }
        if let chart {
            let name = ModelStore.displayName(of: model.base.model, path: lm.path) + (model.adapter.map { " + " + ($0 as NSString).lastPathComponent } ?? "")
            try AtomicFile.write(report.chartSVG(title: "MMLU \(shots)-shot: \(name)"), to: chart)
        }
        if let output { try AtomicFile.write(summary.serialized(indent: 1, compactLeaves: true) + "\n", to: output) }
        print(summary.serialized())
    }
}

extension MMLU.Style: ExpressibleByArgument {}

struct EvalPreference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preference",
        abstract: "A preference method's loss and TRL's metrics of an adapter (against its reference) on held-out data; a JSON summary on stdout.",
        discussion: """
            Reads the data as finch train --method does (pairs in TRL's formats; for kto unpaired examples or pairs, \
            KL completions rotated within each batch). The policy is the model with --adapter (or the base alone); \
            the reference (dpo, kto) is the base with the adapters off, or --ref-adapter. For dpo, rewards/accuracies \
            is the share of pairs whose chosen answer gains more log-probability over the reference than the \
            rejected one (β·log-ratio, TRL's implicit reward); simpo and orpo score averaged log-probabilities with \
            no reference; kto reports kl and the rewards of desirable and undesirable completions.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "Held-out data (JSON / JSONL): pairs {prompt, chosen, rejected}, or for kto {prompt, completion, label} too.")
    var data: String
    @Option(name: .long, help: "dpo (the default), simpo, orpo or kto.")
    var method: TrainingMethod = .dpo
    @Option(name: .long, help: "The reference adapter (dpo, kto; default: the base, adapters off).")
    var refAdapter: String?
    @Option(name: .long, help: "β.")
    var beta = 0.1
    @Option(name: .long, help: "The method's loss_type (dpo: sigmoid by default; kto: kto).")
    var lossType: String?
    @Option(name: .long, help: "Robust / EXO DPO's and SimPO's label smoothing.")
    var labelSmoothing = 0.0
    @Option(name: .long, help: "SimPO's γ.")
    var simpoGamma = 0.5
    @Option(name: .long, help: "KTO's weights of desirable and undesirable completions.")
    var desirableWeight = 1.0
    @Option(name: .long, help: "KTO's weight of undesirable completions.")
    var undesirableWeight = 1.0
    @Option(name: .long, help: "Longest prompt + answer in tokens.")
    var maxLength = 1024
    @Option(name: .long, help: "Examples per pass (for kto also the batch its KL completions rotate in).")
    var batchSize = 4

    func run() throws {
        guard method.isPreference else { throw ValidationError("--method sft: finch eval perplexity scores sequences") }
        let lm = try model.load()
        let policy = lm.model.activeAdapter
        var c = TrainingConfig()
        c.method = method; c.beta = beta; c.lossType = lossType; c.labelSmoothing = labelSmoothing; c.simpoGamma = simpoGamma
        c.desirableWeight = desirableWeight; c.undesirableWeight = undesirableWeight; c.maxLength = maxLength; c.batchSize = batchSize
        c.refAdapter = refAdapter
        try c.validate()
        if let refAdapter { try lm.model.loadAdapter(directory: try ModelStore.resolveAdapter(refAdapter), name: Trainer.referenceAdapterName) }
        lm.model.setActiveAdapter(policy)
        let objective = PreferenceObjective(config: c, referenceAdapter: refAdapter == nil ? nil : Trainer.referenceAdapterName)
        let examples = try PreferenceData.load(path: data, config: c, tokenizer: lm.tokenizer, decoderStart: lm.prompts.decoderStartTokenId.map(Int32.init),
                                               model: lm.path).examples.assigningKLCompletions(batchSize: batchSize)
        var loss = 0.0, sums: [String: MetricSum] = [:], i = 0
        while i < examples.count {
            let b = try objective.evaluate(model: lm.model, examples: examples[i..<min(i + batchSize, examples.count)], trained: policy)
            loss += b.loss * Double(b.examples)
            sums.merge(b.metrics, uniquingKeysWith: +)
            i += batchSize
            stderrPrint("\(method == .kto ? "examples" : "pairs") \(min(i, examples.count))/\(examples.count)")
        }
        var fields: [(String, JSONValue)] = [
            ("data", .string(data)), ("model", .string(lm.path)), ("adapter", model.adapter.map(JSONValue.string) ?? .null),
            ("method", .string(method.rawValue)),
            ("reference", objective.referenceFree ? .null : .string(refAdapter ?? "base")),
            (method == .kto ? "examples" : "pairs", .int(examples.count)), ("beta", .double(beta))]
        if method == .dpo { fields.append(("loss_type", .string(c.dpoLossType.rawValue))) }
        if method == .kto { fields.append(("loss_type", .string(c.ktoLossType.rawValue))) }
        fields.append(("loss", .double(loss / Double(examples.count))))
        for name in objective.metricNames { if let m = sums[name] { fields.append((name, .double(m.mean))) } }
        print(JSONValue.object(fields).serialized())
    }
}
