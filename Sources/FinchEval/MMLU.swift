import FinchCore
import FinchFormats
import FinchModels
import FinchTokenizer
import FinchTrain
import Foundation

// Dimension letters: V vocabulary.

/// One multiple-choice question in qlora's MMLU layout: `{"subject", "input", "output"}`, the
/// input ending in "Answer:" and the output the letter of the right choice.
public struct MMLUItem: Sendable, Equatable {
    public var subject: String
    public var input: String
    /// "A", "B", "C" or "D".
    public var answer: String
    public init(subject: String, input: String, answer: String) {
        self.subject = subject; self.input = input; self.answer = answer
    }

    /// The header line ("The following are multiple choice questions (with answers) about …\n\n")
    /// and the question after it; an input without a blank line is all question.
    var headerAndQuestion: (header: String, question: String) {
        guard input.hasPrefix("The following are"), let r = input.range(of: "\n\n") else { return ("", input) }
        return (String(input[..<r.upperBound]), String(input[r.upperBound...]))
    }
}

/// MMLU accuracy as qlora measures it during training (`--do_mmlu_eval`) and as lm-eval does.
public enum MMLU {
    public static let letters = ["A", "B", "C", "D"]

    /// How an item is scored.
    public enum Style: String, Sendable, CaseIterable {
        /// qlora's MMLUEvalCallback: the example is `bos + input`; the prediction is the largest of
        /// the logits of the tokens "A", "B", "C", "D" at its last token. The loss is the mean
        /// cross-entropy of the target `output + eos` (qlora's `mmlu_loss`).
        case qlora
        /// lm-eval's multiple choice: the log-likelihood of each continuation " A" … " D" after the
        /// input (no BOS, as lm-eval's HF model adds none by default); the largest wins.
        case harness
    }

    /// Reads a qlora MMLU file (JSON lines or one JSON array of `{"subject", "input", "output"}`).
    public static func load(path: String) throws -> [MMLUItem] {
        let records = try DataFileReader.records(path: path)
        if records.isEmpty { throw DataError.emptyDataset(path: path, dropped: 0) }
        return try records.map { r throws -> MMLUItem in
            func field(_ k: String) throws -> String {
                guard let s = r.value[k]?.stringValue else {
                    throw r.malformed(path, "MMLU items need string keys \"subject\", \"input\" and \"output\" (qlora's "
                        + "layout); \"\(k)\" is \(r.value[k].map(\.kindName) ?? "missing")")
                }
                return s
            }
            let answer = try field("output").trimmingCharacters(in: .whitespaces)
            guard letters.contains(answer) else {
                throw r.malformed(path, "\"output\" must be one of A, B, C, D; found \"\(answer)\"")
            }
            return MMLUItem(subject: try field("subject"), input: try field("input"), answer: answer)
        }
    }

    /// Items with `shots` solved examples of the same subject put before the question, after the
    /// subject's header line, each as "question Answer: X\n\n" (the MMLU paper's layout). The
    /// examples come from `pool` (MMLU's dev split, in qlora's layout) or, without one, from the
    /// other items of the same subject in `items` (the first `shots` of them, never the item itself).
    public static func withShots(_ items: [MMLUItem], shots: Int, pool: [MMLUItem]? = nil) throws -> [MMLUItem] {
        if shots == 0 { return items }
        guard shots > 0 else { throw EvalError(item: "--shots", "must be 0 or more, got \(shots)") }
        let source = pool ?? items
        var bySubject: [String: [(Int, MMLUItem)]] = [:]
        for (i, it) in source.enumerated() { bySubject[it.subject, default: []].append((i, it)) }
        return try items.enumerated().map { i, item in
            let candidates = (bySubject[item.subject] ?? []).filter { pool != nil || $0.0 != i }.prefix(shots)
            guard candidates.count == shots else {
                throw EvalError(item: "subject \"\(item.subject)\"",
                                "\(shots)-shot MMLU needs \(shots) other items of it \(pool == nil ? "in the data" : "in the shots file"); "
                                    + "found \(candidates.count)", advice: "lower --shots, or give a shots file with more items")
            }
            let (header, question) = item.headerAndQuestion
            let examples = candidates.map { $0.1.headerAndQuestion.question + " " + $0.1.answer + "\n\n" }.joined()
            return MMLUItem(subject: item.subject, input: header + examples + question, answer: item.answer)
        }
    }

    /// One item's outcome.
    public struct ItemResult: Sendable, Equatable {
        public var subject: String
        public var answer: String
        public var prediction: String
        /// qlora: the logits of A, B, C, D; harness: the log-likelihoods of " A" … " D".
        public var scores: [Double]
        /// qlora: mean cross-entropy of the target (letter + EOS); nil for harness.
        public var loss: Double?
        /// Tokens the model read for the item.
        public var promptTokens: Int
        public var correct: Bool { prediction == answer }
        public init(subject: String, answer: String, prediction: String, scores: [Double], loss: Double?, promptTokens: Int) {
            self.subject = subject; self.answer = answer; self.prediction = prediction; self.scores = scores
            self.loss = loss; self.promptTokens = promptTokens
        }
        /// Gap between the best and the second-best score (a near-tie flips on rounding).
        public var margin: Double {
            let s = scores.sorted(by: >)
            return s[0] - s[1]
        }
    }

    /// Accuracy of one subject.
    public struct SubjectScore: Sendable, Equatable {
        public var subject: String
        public var correct: Int
        public var total: Int
        public var accuracy: Double { Double(correct) / Double(total) }
    }

    /// The outcome of a run.
    public struct Report: Sendable {
        public var style: Style
        public var items: [ItemResult]
        public var seconds: Double
        public init(style: Style, items: [ItemResult], seconds: Double) {
            self.style = style; self.items = items; self.seconds = seconds
        }
        /// Subjects in name order.
        public var subjects: [SubjectScore] {
            var by: [String: SubjectScore] = [:]
            for r in items {
                by[r.subject, default: SubjectScore(subject: r.subject, correct: 0, total: 0)].total += 1
                if r.correct { by[r.subject]!.correct += 1 }
            }
            return by.values.sorted { $0.subject < $1.subject }
        }
        /// qlora's headline: the mean of the subjects' accuracies.
        public var subjectMeanAccuracy: Double {
            let s = subjects
            return s.isEmpty ? 0 : s.reduce(0) { $0 + $1.accuracy } / Double(s.count)
        }
        /// Correct items / items.
        public var itemAccuracy: Double {
            items.isEmpty ? 0 : Double(items.filter(\.correct).count) / Double(items.count)
        }
        /// qlora's `mmlu_loss` (qlora style only).
        public var loss: Double? {
            let l = items.compactMap(\.loss)
            return l.isEmpty ? nil : l.reduce(0, +) / Double(l.count)
        }
        public var itemsPerSecond: Double { Double(items.count) / max(seconds, 1e-9) }
    }

    /// Scores `items` with `lm` (and its active adapter), any kind, `batchSize` items per forward pass.
    public static func evaluate(_ lm: LoadedModel, items: [MMLUItem], style: Style = .qlora,
                                batchSize: Int = 8, progress: ((_ done: Int, _ of: Int) -> Void)? = nil) throws -> Report {
        guard batchSize >= 1 else { throw EvalError(item: "--batch-size", "the MMLU batch size must be at least 1") }
        let start = Date()
        var results: [ItemResult] = []
        results.reserveCapacity(items.count)
        var i = 0
        while i < items.count {
            let batch = Array(items[i..<min(i + batchSize, items.count)])
            switch style {
            case .qlora: results += try scoreQLoRA(lm, batch)
            case .harness: results += try scoreHarness(lm, batch)
            }
            i += batch.count
            progress?(i, items.count)
        }
        return Report(style: style, items: results, seconds: Date().timeIntervalSince(start))
    }

    /// The ids qlora compares: `tokenizer("A", add_special_tokens=False).input_ids[0]`, …
    public static func letterIds(_ tokenizer: Tokenizer) throws -> [Int] {
        try letters.map { l in
            guard let id = tokenizer.encode(l).first else { throw EvalError(item: "tokenizer", "it gives no token for \"\(l)\"", advice: "MMLU scores the letters A to D; use a model whose tokenizer has them") }
            return id
        }
    }

    static func checkLength(_ model: any LanguageModel, _ n: Int) throws {
        if n > model.maxPositions {
            throw EvalError("an MMLU prompt of \(n) tokens is longer than the model's \(model.maxPositions) positions",
                            advice: "use fewer --shots, or a model with a longer context")
        }
    }

    static func logProb(_ row: UnsafeBufferPointer<Float>, _ t: Int) -> Double {
        Double(row[t]) - Double(CrossEntropy.logSumExp(row))
    }

    /// qlora's scoring: the source is BOS + input, the target the answer letter + EOS; the
    /// prediction is the largest of the logits of A / B / C / D where the target's first token
    /// is predicted, and the loss the target's mean NLL (qlora's `mmlu_loss`).
    static func scoreQLoRA(_ lm: LoadedModel, _ batch: [MMLUItem]) throws -> [ItemResult] {
        let model = lm.model, tokenizer = lm.tokenizer
        let abcd = try letterIds(tokenizer)
        let bos = tokenizer.bosTokenId.map { [$0] } ?? []
        let sources = batch.map { bos + tokenizer.encode($0.input) }
        let targets = batch.map { tokenizer.encode($0.answer + (tokenizer.eosToken ?? "")) }
        for (s, t) in zip(sources, targets) { try checkLength(model, s.count + t.count) }
        let started = try model.start(sources, capacity: targets.map(\.count).max() ?? 1)
        let first = try model.step(started.map { StepInput(tokens: $0.input, state: $0.state) }, logits: .last)
        // The target's later tokens (EOS) are scored from the logits after its first ones.
        let more = batch.indices.filter { targets[$0].count > 1 }
        let rest = more.isEmpty ? nil
            : try model.step(more.map { StepInput(tokens: Array(targets[$0].dropLast()), state: started[$0].state) }, logits: .all)
        return batch.indices.map { b in
            let row = first.row(first.rows[b].lowerBound)
            let scores = abcd.map { Double(row[$0]) }
            var nll = -logProb(row, targets[b][0])
            if let rest, let k = more.firstIndex(of: b) {
                for (j, t) in targets[b].dropFirst().enumerated() { nll -= logProb(rest.row(rest.rows[k].lowerBound + j), t) }
            }
            let best = scores.indices.max { scores[$0] < scores[$1] }!
            return ItemResult(subject: batch[b].subject, answer: batch[b].answer, prediction: letters[best], scores: scores,
                              loss: nll / Double(targets[b].count), promptTokens: sources[b].count)
        }
    }

    /// lm-eval's scoring: the log-likelihood of " A" … " D" after the input, tokenized as
    /// lm-eval tokenizes pairs for the model's kind (`PromptFormat.scoringPair`).
    static func scoreHarness(_ lm: LoadedModel, _ batch: [MMLUItem]) throws -> [ItemResult] {
        let model = lm.model
        let pairs = batch.map { item in letters.map { lm.prompts.scoringPair(context: item.input, continuation: " " + $0) } }
        var scores = [[Double]](repeating: [], count: batch.count)
        // One-token continuations of one context: one pass over the context gives all four.
        let simple = batch.indices.filter { b in
            pairs[b].allSatisfy { $0.continuation.count == 1 && $0.context == pairs[b][0].context } && !pairs[b][0].context.isEmpty
        }
        if !simple.isEmpty {
            for b in simple { try checkLength(model, pairs[b][0].context.count) }
            let out = try model.nextTokenLogits(simple.map { pairs[$0][0].context })
            for (k, b) in simple.enumerated() {
                let row = out.row(out.rows[k].lowerBound)
                scores[b] = pairs[b].map { logProb(row, $0.continuation[0]) }
            }
        }
        // Anything else: every continuation token scored after its context.
        for b in batch.indices where !simple.contains(b) {
            for p in pairs[b] { try checkLength(model, p.context.count + p.continuation.count) }
            scores[b] = try model.logLikelihoods(pairs[b]).map { $0.reduce(0, +) }
        }
        return batch.indices.map { b in
            let best = scores[b].indices.max { scores[b][$0] < scores[b][$1] }!
            return ItemResult(subject: batch[b].subject, answer: batch[b].answer, prediction: letters[best], scores: scores[b],
                              loss: nil, promptTokens: pairs[b][0].context.count)
        }
    }
}

extension MMLU.Report {
    /// The summary as JSON: accuracies, loss, speed and every subject.
    public func summaryJSON(extra: [(key: String, value: JSONValue)] = []) -> JSONValue {
        var fields: [(key: String, value: JSONValue)] = extra + [
            ("style", .string(style.rawValue)), ("items", .int(items.count)),
            ("subjects", .int(subjects.count)),
            ("accuracy_subject_mean", .double(subjectMeanAccuracy)), ("accuracy_items", .double(itemAccuracy)),
        ]
        if let l = loss { fields.append(("mmlu_loss", .double(l))) }
        fields += [("seconds", .double(seconds)), ("items_per_s", .double(itemsPerSecond)),
                   ("per_subject", .object(subjects.map { s in
                       (s.subject, .object([("accuracy", .double(s.accuracy)), ("correct", .int(s.correct)),
                                            ("total", .int(s.total))]))
                   }))]
        return .object(fields)
    }

    /// One JSON line per item (index, subject, answer, prediction, scores, loss).
    public func predictionLines() -> String {
        items.enumerated().map { i, r in
            var f: [(key: String, value: JSONValue)] = [("index", .int(i)), ("subject", .string(r.subject)),
                                            ("answer", .string(r.answer)), ("prediction", .string(r.prediction)),
                                            ("scores", .array(r.scores.map { .double($0) })),
                                            ("prompt_tokens", .int(r.promptTokens))]
            if let l = r.loss { f.append(("loss", .double(l))) }
            return JSONValue.object(f).serialized() + "\n"
        }.joined()
    }

    /// A horizontal bar chart of the subjects' accuracies (SVG), with the chance line at 25%
    /// and the subject mean.
    public func chartSVG(title: String) -> String {
        let subs = subjects
        let left = 230.0, right = 30.0, top = 50.0, rowH = 14.0, bottom = 40.0
        let width = 760.0, pw = width - left - right
        let height = top + rowH * Double(subs.count) + bottom
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func x(_ a: Double) -> Double { left + pw * a }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="10" y="18" font-size="14">\(esc(title))</text>
        <text x="10" y="36" fill="#555">\(style.rawValue) style · \(items.count) items · subject mean \(String(format: "%.1f%%", 100 * subjectMeanAccuracy)) · items \(String(format: "%.1f%%", 100 * itemAccuracy))</text>

        """
        for i in 0...4 {
            let a = Double(i) / 4
            out += "<line x1=\"\(f(x(a)))\" x2=\"\(f(x(a)))\" y1=\"\(f(top - 4))\" y2=\"\(f(height - bottom))\" stroke=\"#ddd\"/>"
            out += "<text x=\"\(f(x(a)))\" y=\"\(f(height - bottom + 14))\" text-anchor=\"middle\">\(i * 25)%</text>\n"
        }
        for (k, s) in subs.enumerated() {
            let y = top + rowH * Double(k)
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(y + rowH - 4))\" text-anchor=\"end\">\(esc(s.subject.replacingOccurrences(of: "_", with: " ")))</text>"
            out += "<rect x=\"\(f(left))\" y=\"\(f(y + 2))\" width=\"\(f(pw * s.accuracy))\" height=\"\(f(rowH - 4))\" fill=\"#1f77b4\">"
            out += "<title>\(esc(s.subject)): \(s.correct)/\(s.total)</title></rect>\n"
        }
        out += "<line x1=\"\(f(x(0.25)))\" x2=\"\(f(x(0.25)))\" y1=\"\(f(top - 4))\" y2=\"\(f(height - bottom))\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>"
        out += "<line x1=\"\(f(x(subjectMeanAccuracy)))\" x2=\"\(f(x(subjectMeanAccuracy)))\" y1=\"\(f(top - 4))\" y2=\"\(f(height - bottom))\" stroke=\"#2ca02c\"/>\n"
        out += "<text x=\"\(f(left))\" y=\"\(f(height - 8))\" fill=\"#555\">accuracy · red dashed: chance (25%) · green: subject mean</text>\n"
        return out + "</svg>\n"
    }
}

/// qlora's `--do_mmlu_eval` for the trainer: MMLU in qlora's style at every evaluation, logged as
/// qlora logs it — `mmlu_loss`, `mmlu_eval_accuracy` (the subject mean) and
/// `mmlu_eval_accuracy_<subject>` — plus `mmlu_eval_item_accuracy`.
public final class MMLUTrainingEvaluator: TrainingEvaluator {
    public let model: LoadedModel
    public let items: [MMLUItem]
    public var batchSize = 8

    public init(model: LoadedModel, items: [MMLUItem]) {
        self.model = model; self.items = items
    }

    /// The evaluator a run's settings ask for (`mmlu_eval`, `mmlu_data`, `max_mmlu_samples`), or nil.
    public static func forRun(_ config: TrainingConfig, model: LoadedModel) throws -> MMLUTrainingEvaluator? {
        guard config.mmluEval, let path = config.mmluData else { return nil }
        var items = try MMLU.load(path: path)
        if let n = config.maxMMLUSamples { items = Array(items.prefix(n)) }
        return MMLUTrainingEvaluator(model: model, items: items)
    }

    public func evaluate(step: Int) throws -> [String: Double] {
        let r = try MMLU.evaluate(model, items: items, style: .qlora, batchSize: batchSize)
        var s = ["mmlu_eval_accuracy": r.subjectMeanAccuracy, "mmlu_eval_item_accuracy": r.itemAccuracy]
        if let l = r.loss { s["mmlu_loss"] = l }
        for sub in r.subjects { s["mmlu_eval_accuracy_\(sub.subject)"] = sub.accuracy }
        return s
    }
}
