import ArgumentParser
import FinchEval
import FinchModels
import FinchServe
import Foundation
import Hummingbird
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over an OpenAI-compatible HTTP API, with a browser chat at /.",
        discussion: """
            Routes: POST /v1/chat/completions, POST /v1/completions (echo + logprobs for scoring), GET /v1/models, \
            POST /v1/adapters, POST /tokenize, POST /detokenize, GET /health (503 while loading), GET /metrics (Prometheus). \
            A request picks an adapter with "model": NAME (or "adapter": NAME); "base" is the model without adapters. \
            Concurrent requests decode together in one batch, each with its own adapter.
            """)

    @OptionGroup var modelOptions: BaseModelOptions

    @Option(name: .long, help: "A LoRA adapter to serve as NAME=DIR (a PEFT directory; repeatable).")
    var adapter: [String] = []

    @Option(name: .long, help: "The address to bind (loopback by default; 0.0.0.0 listens on every interface).")
    var host = "127.0.0.1"

    @Option(name: .long, help: "The port to listen on.")
    var port = 8080

    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every API route.")
    var apiKey: String?

    @Option(name: .customLong("max-batch"), help: "Sequences decoded together at most; more requests queue.")
    var maxBatch = 64

    @Option(name: .long, help: "Context length: prompt plus new tokens of one sequence (default: the model's, at most 4096).")
    var ctx: Int?

    @Option(name: .customLong("max-tokens"), help: "New tokens one request may ask for at most.")
    var maxTokens = 4096

    @Option(name: .customLong("model-name"), help: "The base model's id in the API (default: the model's file or directory name).")
    var modelName: String?

    @Option(name: .customLong("conversation-log"), help: "Keep a conversation log (JSON lines, for human evaluation): chat completions that ask for it (the page's checkbox, \"finch_log\": true) are appended to FILE.")
    var conversationLog: String?

    @Option(name: .customLong("eval-answers"), help: "Human evaluation at /eval: one system's answers as NAME=FILE (from finch generate --data; two or more).")
    var evalAnswers: [String] = []

    @Option(name: .customLong("eval-questions"), help: "Questions for /eval (question_id / id, text); default: the questions in the answer files.")
    var evalQuestions: String?

    @Option(name: .customLong("eval-log"), help: "Ratings from /eval, one JSON line each (continued if it exists).")
    var evalLog: String?

    func validate() throws {
        if !evalAnswers.isEmpty && (evalAnswers.count < 2 || evalLog == nil) {
            throw ValidationError("human evaluation needs two or more --eval-answers NAME=FILE and --eval-log FILE")
        }
        if maxBatch < 1 { throw ValidationError("--max-batch must be at least 1") }
        if let ctx, ctx < 2 { throw ValidationError("--ctx must be at least 2") }
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        for a in adapter where a.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--adapter takes NAME=DIR, got '\(a)'")
        }
    }

    func run() async throws {
        var logger = Logger(label: "finch.serve")
        logger.logLevel = .info
        var options = ServeOptions()
        options.host = host; options.port = port; options.apiKey = apiKey
        options.maxTokens = maxTokens; options.conversationLog = conversationLog
        if let evalLog, !evalAnswers.isEmpty {
            let sets = try evalAnswers.map(AnswerSet.load(spec:))
            let questions = try evalQuestions.map { try JudgeQuestion.load(path: $0) } ?? JudgeQuestion.from(sets[0])
            let session = try HumanEvalSession(systems: sets, questions: questions, log: evalLog)
            options.humanEval = session
            let p = session.progress
            stderrPrint("human evaluation at /eval: \(sets.map(\.name).joined(separator: " vs ")), \(p.done)/\(p.total) rated, log \(evalLog)")
        }
        let state = ServerState()
        let metrics = ServerMetrics()
        let app = try FinchServer.application(state: state, options: options, metrics: metrics, logger: logger)
        let adapters = adapter.map { a -> (name: String, directory: String) in
            let parts = a.split(separator: "=", maxSplits: 1).map(String.init)
            return (parts[0], parts[1])
        }
        let (base, maxBatch, ctx, modelName, host, port) = (modelOptions, self.maxBatch, self.ctx, self.modelName, self.host, self.port)
        // The model loads while the server already answers (/health says 503 until it is ready).
        let loader = Thread {
            do {
                let lm = try base.load()
                let served = try ServedModel.start(lm: lm, adapters: adapters, maxBatch: maxBatch, contextLength: ctx,
                                                   name: modelName ?? ModelStore.displayName(of: base.model, path: lm.path),
                                                   observer: metrics)
                for (name, dir) in adapters { stderrPrint("adapter \(name): \(dir)") }
                if served.contextLength > lm.model.maxPositions {
                    stderrPrint("note: --ctx \(served.contextLength) is past the \(lm.model.maxPositions) positions the model was trained on")
                }
                state.phase = .ready(served)
                stderrPrint("serving \(served.name) (context \(served.contextLength), batch \(maxBatch)) at http://\(host):\(port)/")
            } catch {
                // Nothing to serve: say why and stop (a supervisor sees the exit status).
                state.phase = .failed("\(error)")
                stderrPrint("error: \(error)")
                Foundation.exit(1)
            }
        }
        loader.stackSize = 16 << 20
        loader.start()
        try await app.runService()
    }
}
