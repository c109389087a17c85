import ArgumentParser
import FinchEval
import FinchFormats
import FinchModels
import FinchTrain
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model (and adapter): perplexity.",
        subcommands: [EvalPerplexity.self])
}

struct EvalPerplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity with its standard error over a text file or a dataset; a JSON summary on stdout.",
        discussion: """
            A plain-text file is tokenized whole. A JSON / JSONL dataset in any format finch train reads is \
            tokenized as training would tokenize it (template, EOS), every token counted, and the examples are \
            concatenated. Without --stride the token stream is cut into non-overlapping windows of --max-seq-len \
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
        let tokens: [Int]
        let ext = (data as NSString).pathExtension.lowercased()
        if format == nil && ext != "json" && ext != "jsonl" {
            guard let text = try? String(contentsOfFile: data, encoding: .utf8) else {
                throw ValidationError("cannot read \(data) as UTF-8 text")
            }
            tokens = lm.tokenizer.encode(text, addSpecialTokens: true)
        } else {
            let options = DatasetOptions(format: format, maxSeqLen: Int(Int32.max), trainOnSource: true)
            tokens = try TrainingData.load(path: data, options: options, tokenizer: lm.tokenizer).flatMap { $0.tokens.map(Int.init) }
        }
        let method: Perplexity.Method = stride.map { .strided(maxSeqLen: maxSeqLen, stride: $0) } ?? .windows(maxSeqLen: maxSeqLen)
        let start = Date()
        let r = try Perplexity.evaluate(lm.model, tokens: tokens, method: method) { w, n in
            if w % 10 == 0 || w == n { stderrPrint("window \(w)/\(n)") }
        }
        let seconds = Date().timeIntervalSince(start)
        let fields: [(String, String)] = [
            ("data", JSONValue.quoted(data)), ("model", JSONValue.quoted(lm.path)), ("adapter", model.adapter.map { JSONValue.quoted($0) } ?? "null"),
            ("protocol", stride == nil ? "\"windows\"" : "\"strided\""), ("max_seq_len", "\(maxSeqLen)"),
            ("stride", stride.map(String.init) ?? "null"), ("tokens", "\(r.tokens)"), ("windows", "\(r.windows)"),
            ("mean_nll", "\(r.meanNLL)"), ("stderr", "\(r.standardError)"), ("perplexity", "\(r.perplexity)"),
            ("perplexity_error", "\(r.perplexityError)"), ("tokens_per_s", String(format: "%.1f", Double(r.tokens) / seconds)),
        ]
        print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
    }
}
