import FinchCore
import FinchFormats
import FinchModels
import FinchTokenizer
import FinchTrain
import Foundation

/// A judge's verdict on a question answered by two assistants, in qlora's three-class reading:
/// 1 (Assistant 1 is better), 2 (Assistant 2 is better) or 3 (a tie).
public enum Verdict: Int, Sendable, Equatable {
    case first = 1, second = 2, tie = 3
}

/// One question put to the judge with two answers in a given order.
public struct JudgeCase: Sendable, Equatable {
    public var question: String
    public var category: String?
    public var answer1: String
    public var answer2: String
    public init(question: String, category: String? = nil, answer1: String, answer2: String) {
        self.question = question; self.category = category; self.answer1 = answer1; self.answer2 = answer2
    }
}

/// What the judge said: its verdict (nil when its output could not be read) and its text.
public struct JudgeOutput: Sendable, Equatable {
    public var verdict: Verdict?
    public var text: String
    /// The judge's logits for "1", "2", "3" when it chose by them.
    public var scores: [Double]?
    public init(verdict: Verdict?, text: String, scores: [Double]? = nil) {
        self.verdict = verdict; self.text = text; self.scores = scores
    }
}

/// Anything that compares two answers: a model (``ModelJudge``), a person, a script in a test.
public protocol PairwiseJudge {
    func judge(_ cases: [JudgeCase]) throws -> [JudgeOutput]
}

/// The judging prompt in qlora's three-class layout (eval/prompts/*_prompt_threeclass.jsonl, after
/// FastChat's): a system line, then the question, each assistant's answer between start and end
/// markers, and the instructions under `[System]`, chosen by the question's category (coding,
/// math, anything else). The verdict is the number on the reply's last line: 1, 2, or 3 for a tie.
public enum JudgePrompt {
    public static let system = "You are a careful, fair assistant who checks how good answers are."

    /// The instructions for a category; `explain` asks for reasons before the verdict line
    /// (qlora's), otherwise for the number alone.
    public static func instructions(category: String?, explain: Bool) -> String {
        let task: String
        switch category?.lowercased() {
        case "coding":
            task = "Judge the programming skill of the two assistants above, who were asked to write a program for the "
                + "problem given. Check that each program solves the problem correctly and efficiently, is clearly "
                + "structured and readable, and explains its logic in comments."
        case "math":
            task = "Judge how well the two assistants above solve the mathematical question. Solve it yourself first, "
                + "then check each assistant's steps and result for errors; the steps count as well as the final answer."
        default:
            task = "Judge the two assistants' answers to the user's question above for helpfulness, relevance, "
                + "accuracy and level of detail. Do not let the order of the answers, or their length, sway you."
        }
        let verdict = "choose the better answer: write 1 for Assistant 1, 2 for Assistant 2, or 3 if they are equally good."
        return explain
            ? task + " Explain your assessment first. Then, on a new last line, " + verdict + " Write nothing else on that line."
            : task + " Answer with a single number: " + verdict
    }

    /// The user message: question, both answers between markers, then the instructions.
    public static func user(_ c: JudgeCase, explain: Bool) -> String {
        "[Question]\n\(c.question)\n\n[The Start of Assistant 1's Answer]\n\(c.answer1)\n\n[The End of Assistant 1's Answer]\n\n"
            + "[The Start of Assistant 2's Answer]\n\(c.answer2)\n\n[The End of Assistant 2's Answer]\n\n"
            + "[System]\n\(instructions(category: c.category, explain: explain))\n\n"
    }

    /// The verdict on the last non-blank line of a reply (qlora's `parse_three_class_score`), or nil.
    public static func parseVerdict(_ reply: String) -> Verdict? {
        let last = reply.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .last { !$0.isEmpty } ?? ""
        return Int(last.trimmingCharacters(in: CharacterSet(charactersIn: ".*: "))).flatMap(Verdict.init(rawValue:))
    }
}

/// A model Finch loads (with or without an adapter) as the judge: either it picks the verdict
/// by its logits for "1", "2" and "3" right after the prompt (`choice`: every case gets a
/// verdict, in one forward pass), or it writes reasons and a last verdict line (`explain`, as
/// qlora asks GPT-4), greedy, read as qlora reads it.
public final class ModelJudge: PairwiseJudge {
    public enum Mode: String, Sendable, CaseIterable { case choice, explain }
    public let lm: LoadedModel
    public let mode: Mode
    public var maxNewTokens = 256
    public var batchSize = 4

    public init(_ lm: LoadedModel, mode: Mode = .choice) { self.lm = lm; self.mode = mode }

    /// The prompt tokens for a case: the chat template with system and user messages and the
    /// generation prompt, or for a model without a template the plain text ending in "Verdict:".
    public func promptTokens(_ c: JudgeCase) throws -> [Int] {
        let user = JudgePrompt.user(c, explain: mode == .explain)
        if lm.tokenizer.chatTemplate != nil {
            return try lm.prompts.tokens(chat: [ChatMessage(role: "system", content: JudgePrompt.system),
                                                ChatMessage(role: "user", content: user)])
        }
        return lm.prompts.tokens(prompt: JudgePrompt.system + "\n\n" + user + (mode == .explain ? "" : "Verdict:"))
    }

    public func judge(_ cases: [JudgeCase]) throws -> [JudgeOutput] {
        var out: [JudgeOutput] = []
        var i = 0
        while i < cases.count {
            let batch = Array(cases[i..<min(i + batchSize, cases.count)])
            let prompts = try batch.map(promptTokens)
            switch mode {
            case .choice:
                let digits = try ["1", "2", "3"].map { d in
                    guard let t = lm.tokenizer.singleTokenId(d) else {
                        throw EvalError(item: "judge", "its tokenizer has no single token for \"\(d)\"", advice: "use --judge-mode explain")
                    }
                    return t
                }
                let model = lm.model
                for p in prompts where p.count > model.maxPositions {
                    throw EvalError(item: "judge", "a judging prompt of \(p.count) tokens is longer than the judge's \(model.maxPositions) positions",
                                    advice: "use a judge with a longer context, or shorter answers (--max-tokens when generating them)")
                }
                let logits = try model.nextTokenLogits(prompts)
                for b in batch.indices {
                    let row = logits.row(logits.rows[b].lowerBound)
                    let scores = digits.map { Double(row[$0]) }
                    let best = scores.indices.max { scores[$0] < scores[$1] }!
                    out.append(JudgeOutput(verdict: Verdict(rawValue: best + 1), text: String(best + 1), scores: scores))
                }
            case .explain:
                let results = try Generator(lm).generate(promptTokens: prompts, options: GenerationOptions(maxNewTokens: maxNewTokens))
                out += results.map { JudgeOutput(verdict: JudgePrompt.parseVerdict($0.text), text: $0.text) }
            }
            i += batch.count
        }
        return out
    }
}

/// One system's answers, read from a `finch generate --data` file (or qlora's generation files).
public struct AnswerSet: Sendable {
    public var name: String
    /// Answers by question id (the id as compact JSON), with the question each line carries.
    public var answers: [String: (question: String?, text: String)]
    /// Ids in file order.
    public var order: [String]

    /// Reads `NAME=FILE` (or a bare FILE, named after it).
    public static func load(spec: String) throws -> AnswerSet {
        guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
            return try load(path: spec, name: ((spec as NSString).lastPathComponent as NSString).deletingPathExtension)
        }
        return try load(path: String(spec[spec.index(after: eq)...]), name: String(spec[..<eq]))
    }

    /// Reads JSON lines with an id (`id` or `question_id`) and an answer (`output`, `generation`
    /// or `text`).
    public static func load(path: String, name: String) throws -> AnswerSet {
        var set = AnswerSet(name: name, answers: [:], order: [])
        for r in try DataFileReader.records(path: path) {
            guard let id = r.value["id"] ?? r.value["question_id"] else {
                throw r.malformed(path, "an answer needs an \"id\" (or \"question_id\"); finch generate --data writes one")
            }
            guard let text = (r.value["output"] ?? r.value["generation"] ?? r.value["text"])?.stringValue else {
                throw r.malformed(path, "an answer needs its text under \"output\" (or \"generation\" / \"text\")")
            }
            let key = id.serialized()
            if set.answers[key] != nil { throw r.malformed(path, "id \(key) is answered twice") }
            set.answers[key] = (r.value["question"]?.stringValue, text)
            set.order.append(key)
        }
        if set.order.isEmpty { throw DataError.emptyDataset(path: path, dropped: 0) }
        return set
    }
}

/// A question to compare systems on.
public struct JudgeQuestion: Sendable, Equatable {
    public var id: String
    public var text: String
    public var category: String?
    public init(id: String, text: String, category: String? = nil) { self.id = id; self.text = text; self.category = category }

    /// The questions an answer file carries (`finch generate --data` writes each with its answer).
    public static func from(_ set: AnswerSet) throws -> [JudgeQuestion] {
        try set.order.map { id in
            guard let q = set.answers[id]?.question else {
                throw EvalError(item: set.name, "its answers carry no \"question\"", advice: "give the questions file")
            }
            return JudgeQuestion(id: id, text: q)
        }
    }

    /// Questions from a file of `{question_id | id, text | question | input, category?}` lines
    /// (vicuna_questions.jsonl, oa_questions.jsonl).
    public static func load(path: String) throws -> [JudgeQuestion] {
        try DataFileReader.records(path: path).map { r in
            guard let id = r.value["question_id"] ?? r.value["id"] ?? r.value["message_id"] else {
                throw r.malformed(path, "a question needs \"question_id\" or \"id\" to match answers by")
            }
            guard let text = (r.value["text"] ?? r.value["question"] ?? r.value["input"])?.stringValue else {
                throw r.malformed(path, "a question needs its text under \"text\" (or \"question\" / \"input\")")
            }
            return JudgeQuestion(id: id.serialized(), text: question(of: text), category: r.value["category"]?.stringValue)
        }
    }

    /// The question of a one-turn OpenAssistant transcript ("### Human: Q### Assistant:", as in
    /// oa_questions.jsonl) without its markers; any other text as it is.
    static func question(of text: String) -> String {
        let human = "### Human:", assistant = "### Assistant:"
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.hasPrefix(human), t.hasSuffix(assistant) else { return text }
        let inner = t.dropFirst(human.count).dropLast(assistant.count)
        if inner.contains(human) || inner.contains(assistant) { return text }   // several turns: keep the transcript
        return inner.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Pairwise comparison of several systems by a judge, every question in both orders: a system
/// wins a question only when the judge prefers it in both orders; any disagreement is a tie.
public enum PairwiseComparison {
    /// One judgement: a question with `system1`'s answer shown first.
    public struct Judgement: Sendable {
        public var questionId: String
        public var system1: String
        public var system2: String
        public var output: JudgeOutput
        /// The system the verdict names, nil for a tie or an unreadable verdict.
        public var preferred: String? {
            switch output.verdict { case .first: return system1; case .second: return system2; default: return nil }
        }
    }

    /// The two orders of one question for one pair, combined.
    public struct Outcome: Sendable {
        public var questionId: String
        public var a: String
        public var b: String
        /// The winner when both orders agree on one; nil otherwise (a tie).
        public var winner: String?
        /// Both orders decisive and naming the same position (so different systems): the judge
        /// followed the order, not the answers.
        public var positionDriven: Bool
    }

    public struct Report: Sendable {
        public var judgements: [Judgement]
        public var outcomes: [Outcome]
        public var ratings: [Elo.Rating]
        /// Of the judgements with a verdict of 1 or 2, the share that chose Assistant 1.
        public var firstPositionRate: Double
        /// Of the outcomes decisive in both orders, the share where the judge chose the same
        /// position both times (100% for a judge that always says "1"; 0 for one that reads the answers).
        public var positionBias: Double
        /// Judgements whose verdict could not be read (counted as ties).
        public var unreadable: Int

        /// Wins, ties and losses of each pair, as a Markdown table, then the Elo table.
        public var table: String {
            var pairs: [String: (Int, Int, Int)] = [:]
            var order: [String] = []
            for o in outcomes {
                let key = "\(o.a) vs \(o.b)"
                if pairs[key] == nil { order.append(key); pairs[key] = (0, 0, 0) }
                if o.winner == o.a { pairs[key]!.0 += 1 } else if o.winner == o.b { pairs[key]!.2 += 1 } else { pairs[key]!.1 += 1 }
            }
            var out = "| pair | first wins | ties | second wins |\n|---|---|---|---|\n"
            for k in order { let p = pairs[k]!; out += "| \(k) | \(p.0) | \(p.1) | \(p.2) |\n" }
            out += String(format: "\nposition bias %.1f%% (same position chosen in both orders), Assistant 1 chosen in %.1f%% of decisive verdicts, %d unreadable\n\n",
                          100 * positionBias, 100 * firstPositionRate, unreadable)
            return out + Elo.table(ratings)
        }
    }

    /// Judges every pair of `systems` on every question both ways and rates the systems.
    public static func run(systems: [AnswerSet], questions: [JudgeQuestion], judge: PairwiseJudge,
                           tournaments: Int = 10_000, seed: UInt64 = 42,
                           progress: ((_ done: Int, _ of: Int) -> Void)? = nil) throws -> Report {
        guard systems.count >= 2 else { throw EvalError("judging needs answers from at least two systems", advice: "give two or more answer files (NAME=FILE)") }
        let names = systems.map(\.name)
        if Set(names).count != names.count { throw EvalError("two answer sets are both named \(names)", advice: "name them apart (NAME=FILE)") }
        for s in systems {
            for q in questions where s.answers[q.id] == nil {
                throw EvalError(item: s.name, "no answer to question \(q.id)", advice: "generate answers for every question")
            }
        }
        var pairs: [(AnswerSet, AnswerSet)] = []
        for i in systems.indices { for j in (i + 1)..<systems.count { pairs.append((systems[i], systems[j])) } }
        var cases: [JudgeCase] = [], meta: [(String, String, String)] = []
        for (a, b) in pairs {
            for q in questions {
                let ta = a.answers[q.id]!.text, tb = b.answers[q.id]!.text
                cases.append(JudgeCase(question: q.text, category: q.category, answer1: ta, answer2: tb)); meta.append((q.id, a.name, b.name))
                cases.append(JudgeCase(question: q.text, category: q.category, answer1: tb, answer2: ta)); meta.append((q.id, b.name, a.name))
            }
        }
        var outputs: [JudgeOutput] = []
        let chunk = 8
        var i = 0
        while i < cases.count {
            let part = Array(cases[i..<min(i + chunk, cases.count)])
            let got = try judge.judge(part)
            guard got.count == part.count else { throw EvalError(item: "judge", "it answered \(got.count) of \(part.count) cases", advice: "check the judge model and --judge-mode") }
            outputs += got
            i += part.count
            progress?(i, cases.count)
        }
        let judgements = zip(meta, outputs).map { m, o in Judgement(questionId: m.0, system1: m.1, system2: m.2, output: o) }
        var outcomes: [Outcome] = []
        var decisiveBoth = 0, samePosition = 0
        for k in stride(from: 0, to: judgements.count, by: 2) {
            let j1 = judgements[k], j2 = judgements[k + 1]
            let w1 = j1.preferred, w2 = j2.preferred
            let decisive = [j1, j2].allSatisfy { $0.output.verdict == .first || $0.output.verdict == .second }
            let same = decisive && j1.output.verdict == j2.output.verdict
            if decisive { decisiveBoth += 1; if same { samePosition += 1 } }
            outcomes.append(Outcome(questionId: j1.questionId, a: j1.system1, b: j1.system2,
                                    winner: w1 != nil && w1 == w2 ? w1 : nil, positionDriven: same))
        }
        let decisive = judgements.filter { $0.output.verdict == .first || $0.output.verdict == .second }
        let matches = outcomes.map { o in Elo.Match(a: o.a, b: o.b, scoreA: o.winner == o.a ? 1 : o.winner == o.b ? 0 : 0.5) }
        return Report(judgements: judgements, outcomes: outcomes,
                      ratings: Elo.ratings(matches, tournaments: tournaments, seed: seed),
                      firstPositionRate: decisive.isEmpty ? 0 : Double(decisive.filter { $0.output.verdict == .first }.count) / Double(decisive.count),
                      positionBias: decisiveBoth == 0 ? 0 : Double(samePosition) / Double(decisiveBoth),
                      unreadable: judgements.filter { $0.output.verdict == nil }.count)
    }
}

extension PairwiseComparison.Report {
    /// One JSON line per judgement.
    public func judgementLines() -> String {
        judgements.map { j in
            var f: [(key: String, value: JSONValue)] = [
                ("question_id", (try? JSONParser.parse(j.questionId)) ?? .string(j.questionId)),
                ("assistant_1", .string(j.system1)), ("assistant_2", .string(j.system2)),
                ("verdict", j.output.verdict.map { .int($0.rawValue) } ?? .null),
                ("preferred", j.preferred.map { .string($0) } ?? .string("tie")), ("judge_output", .string(j.output.text)),
            ]
            if let s = j.output.scores { f.append(("scores", .array(s.map { .double($0) }))) }
            return JSONValue.object(f).serialized() + "\n"
        }.joined()
    }

    /// The summary as JSON.
    public func summaryJSON() -> JSONValue {
        .object([
            ("judgements", .int(judgements.count)), ("outcomes", .int(outcomes.count)),
            ("position_bias", .double(positionBias)), ("first_position_rate", .double(firstPositionRate)),
            ("unreadable", .int(unreadable)),
            ("elo", .array(ratings.map { r in
                .object([("system", .string(r.system)), ("elo", .double(r.elo)), ("spread", .double(r.spread)),
                         ("wins", .int(r.wins)), ("ties", .int(r.ties)), ("losses", .int(r.losses))])
            })),
        ])
    }
}
