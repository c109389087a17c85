import ArgumentParser
import FinchEval
import FinchFormats
import FinchModels
import Foundation

/// `finch judge`: pairwise comparison of answer files by a local judge model, both orders, Elo.
struct Judge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the answers of two or more systems with a local judge model; both orders, position bias, Elo.",
        discussion: """
            Each --answers NAME=FILE is a file from `finch generate --data QUESTIONS --output FILE` (or qlora's \\
            generation files: question_id + text). Every pair of systems is judged on every question twice, each \\
            answer shown first once, in qlora's three-class prompt layout (question, Assistant 1 / Assistant 2, \\
            a verdict of 1, 2 or 3 = tie); a system wins a question only when both orders agree, otherwise it is a \\
            tie. Elo ratings (start 1000, K = 32) are averaged over --tournaments seeded random orders of the \\
            outcomes. --judge-mode choice takes the verdict from the judge's logits for "1", "2", "3" (every case \\
            gets one); explain lets it write its reasons and reads the number on its last line, as qlora reads \\
            GPT-4. Every judgement goes to --output as a JSON line; the tables to stdout.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "NAME=FILE of one system's answers (repeat for each system; at least two).")
    var answers: [String] = []
    @Option(name: .long, help: "Questions file (question_id / id, text, category), e.g. vicuna_questions.jsonl; default: the questions in the answer files.")
    var questions: String?
    @Option(name: .long, help: "Judge only the first N questions.")
    var limit: Int?
    @Option(name: .customLong("judge-mode"), help: "choice (logits of 1/2/3) or explain (reasons, then a verdict line).")
    var judgeMode: ModelJudge.Mode = .choice
    @Option(name: .long, help: "Tokens the judge may write in explain mode.")
    var maxNewTokens = 256
    @Option(name: .long, help: "Random orders of the outcomes Elo is averaged over.")
    var tournaments = 10_000
    @Option(name: .long, help: "Seed of the tournaments.")
    var seed: UInt64 = 42
    @Option(name: .long, help: "Judgements file (JSON lines).")
    var output: String
    @Option(name: .long, help: "Also write the summary (JSON) here.")
    var summary: String?

    func run() throws {
        guard answers.count >= 2 else { throw ValidationError("give at least two --answers NAME=FILE") }
        let sets = try answers.map(AnswerSet.load(spec:))
        var qs = try questions.map { try JudgeQuestion.load(path: $0) } ?? JudgeQuestion.from(sets[0])
        if let limit { qs = Array(qs.prefix(max(0, limit))) }
        let lm = try model.load()
        let judge = ModelJudge(lm, mode: judgeMode)
        judge.maxNewTokens = maxNewTokens
        let report = try PairwiseComparison.run(systems: sets, questions: qs, judge: judge, tournaments: tournaments, seed: seed) { d, n in
            stderrPrint("judged \(d)/\(n)")
        }
        try AtomicFile.write(report.judgementLines(), to: output)
        if let summary { try AtomicFile.write(report.summaryJSON().serialized(indent: 1) + "\n", to: summary) }
        print("judge: \(ModelStore.displayName(of: model.base.model, path: lm.path))\(model.adapter.map { " + " + $0 } ?? ""), "
              + "\(qs.count) questions × \(sets.count * (sets.count - 1) / 2) pairs × 2 orders (\(judgeMode.rawValue) mode)\n")
        print(report.table)
    }
}

extension ModelJudge.Mode: ExpressibleByArgument {}
