import ArgumentParser
import FinchEval
import FinchFormats
import FinchModels
import FinchNet
import Foundation

/// `finch judge`: pairwise comparison of answer files by a local judge model or one behind an
/// OpenAI-compatible API, both orders, Elo.
struct Judge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the answers of two or more systems with a judge (a local model, or any OpenAI-compatible API); both orders, position bias, Elo.",
        discussion: """
            Each --answers NAME=FILE is a file from `finch generate --data QUESTIONS --output FILE` (or qlora's \\
            generation files: question_id + text). Every pair of systems is judged on every question twice, each \\
            answer shown first once, in qlora's three-class prompt layout (question, Assistant 1 / Assistant 2, \\
            a verdict of 1, 2 or 3 = tie); a system wins a question only when both orders agree, otherwise it is a \\
            tie. Elo ratings (start 1000, K = 32) are averaged over --tournaments seeded random orders of the \\
            outcomes. --judge-mode choice takes the verdict from the judge's logits for "1", "2", "3" (every case \\
            gets one); explain lets it write its reasons and reads the number on its last line, as qlora reads \\
            GPT-4. Every judgement goes to --output as a JSON line; the tables to stdout.

            --judge-url URL --judge-model NAME judges with a model behind an OpenAI-compatible chat API instead \
            (OpenAI: https://api.openai.com/v1 with gpt-4o; llama.cpp's server, vLLM, `finch serve`: \
            http://HOST:PORT/v1), the key from OPENAI_API_KEY, in explain mode unless --judge-mode choice \
            (the number alone), at temperature 0, --judge-concurrency requests at a time; 429 and 5xx \
            answers are retried with backoff. Replies are cached (--judge-cache, default \
            $FINCH_HOME/judge-cache.jsonl) by the URL and the whole request, so a rerun asks nothing twice.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "NAME=FILE of one system's answers (repeat for each system; at least two).")
    var answers: [String] = []
    @Option(name: .long, help: "Questions file (question_id / id, text, category), e.g. vicuna_questions.jsonl; default: the questions in the answer files.")
    var questions: String?
    @Option(name: .long, help: "Judge only the first N questions.")
    var limit: Int?
    @Option(name: .customLong("judge-mode"), help: "choice (a local judge: the logits of 1/2/3; an API judge: the number alone) or explain (reasons, then a verdict line). Default: choice for a local judge, explain for an API judge.")
    var judgeMode: ModelJudge.Mode?
    @Option(name: .customLong("judge-url"), help: "Judge with a model behind this OpenAI-compatible API base (e.g. https://api.openai.com/v1); key from OPENAI_API_KEY.")
    var judgeURL: String?
    @Option(name: .customLong("judge-model"), help: "The API's model name (with --judge-url), e.g. gpt-4o.")
    var judgeModel: String?
    @Option(name: .customLong("judge-concurrency"), help: "API requests at a time (with --judge-url).")
    var judgeConcurrency = 4
    @Option(name: .customLong("judge-cache"), help: "The cache of API replies (JSON lines; default $FINCH_HOME/judge-cache.jsonl).")
    var judgeCache: String?
    @Flag(name: .customLong("no-judge-cache"), help: "Ask the API every case, reading and writing no cache.")
    var noJudgeCache = false
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
        let judge: PairwiseJudge, name: String, mode: ModelJudge.Mode
        var api: APIJudge?
        if let judgeURL {
            guard let judgeModel else { throw ValidationError("--judge-url needs --judge-model NAME (the API's model, e.g. gpt-4o)") }
            if model.base.model != nil || model.adapter != nil {
                throw ValidationError("--model / --adapter name a local judge and --judge-url an API judge: give one of them")
            }
            guard judgeConcurrency >= 1 else { throw ValidationError("--judge-concurrency must be at least 1") }
            mode = judgeMode ?? .explain
            var chat = OpenAIChat(baseURL: judgeURL, model: judgeModel, apiKey: ProcessInfo.processInfo.environment["OPENAI_API_KEY"])
            chat.maxTokens = maxNewTokens   // temperature 0: the verdict qlora asks for, and what the cache keys on
            let cache = noJudgeCache ? nil : try JudgeCache(path: judgeCache ?? JudgeCache.defaultPath(home: ModelStore.home))
            let j = APIJudge(chat: chat, mode: mode, cache: cache)
            j.concurrency = judgeConcurrency
            j.onRetry = { reason, seconds in stderrPrint("judge: \(reason); trying again in \(String(format: "%.1f", seconds)) s") }
            judge = j; api = j; name = "\(judgeModel) at \(chat.endpoint)"
        } else {
            if judgeModel != nil { throw ValidationError("--judge-model names a model behind --judge-url; give --judge-url too (or --model for a local judge)") }
            mode = judgeMode ?? .choice
            let lm = try model.load()
            let local = ModelJudge(lm, mode: mode)
            local.maxNewTokens = maxNewTokens
            judge = local
            name = ModelStore.displayName(of: model.base.model, path: lm.path) + (model.adapter.map { " + " + $0 } ?? "")
        }
        let report = try PairwiseComparison.run(systems: sets, questions: qs, judge: judge, tournaments: tournaments, seed: seed) { d, n in
            stderrPrint("judged \(d)/\(n)")
        }
        try AtomicFile.write(report.judgementLines(), to: output)
        if let summary { try AtomicFile.write(report.summaryJSON().serialized(indent: 1) + "\n", to: summary) }
        print("judge: \(name), \(qs.count) questions × \(sets.count * (sets.count - 1) / 2) pairs × 2 orders (\(mode.rawValue) mode)"
              + (api.map { ", \($0.asked) asked, \($0.fromCache) from the cache" + ($0.cache.map { " (\($0.path))" } ?? "") } ?? "") + "\n")
        print(report.table)
    }
}

extension ModelJudge.Mode: ExpressibleByArgument {}
