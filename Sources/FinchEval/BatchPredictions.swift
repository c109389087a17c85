import FinchFormats
import FinchModels
import FinchTrain
import Foundation

/// Answers for every item of a dataset, one JSON line each (qlora's `--do_predict`), written as
/// they are made so that a stopped run resumes where it stopped.
///
/// Each line: `id`, `question`, `output`, `finish_reason`, `prompt_tokens`, `output_tokens`,
/// `reference` (the dataset's answer, when it has one) and `model`. Item k samples with seed
/// `seed + k` whatever the batch, so a resumed run writes what an unbroken one would have.
public struct BatchPredictions {
    public let generator: Generator
    public let options: GenerationOptions
    public var batchSize = 8
    /// Written into every line (`model`).
    public var modelName: String

    public init(generator: Generator, options: GenerationOptions, modelName: String) {
        self.generator = generator; self.options = options; self.modelName = modelName
    }

    /// What a run did.
    public struct Outcome: Sendable {
        /// Items already in the file when the run started.
        public var resumed: Int
        /// Items answered by this run.
        public var written: Int
        public var generatedTokens: Int
        public var seconds: Double
    }

    /// The ids already answered in `file` (as compact JSON).
    static func answeredIds(_ file: JSONLinesFile) throws -> Set<String> {
        var ids = Set<String>()
        for (n, v) in try file.values() {
            guard let id = v["id"] else {
                throw EvalError(file: file.path, line: n, "not an answer line (a JSON object with \"id\")",
                                advice: "use another --output, or delete the file to start over")
            }
            ids.insert(id.serialized())
        }
        return ids
    }

    /// Answers the items not yet in `output`, appending a line per item (flushed to disk per batch).
    public func run(items: [PromptItem], output: String,
                    progress: ((_ done: Int, _ of: Int) -> Void)? = nil) throws -> Outcome {
        let start = Date()
        let known = Set(items.map { $0.id.serialized() })
        let file = try JSONLinesFile(path: output)   // a half-written last line is cut off
        let done = try Self.answeredIds(file)
        if let stray = done.first(where: { !known.contains($0) }) {
            throw EvalError(file: output, "it holds an answer for id \(stray), which is not in the data (it belongs to another dataset)",
                            advice: "use another --output")
        }
        let todo = items.indices.filter { !done.contains(items[$0].id.serialized()) }
        var written = 0, tokens = 0
        var i = 0
        while i < todo.count {
            // Batches are fixed blocks of item indices (k / batchSize), so a resumed run batches
            // the rest as an unbroken run did; item k samples with seed + k.
            let block = todo[i] / batchSize
            var batch = [todo[i]]
            while i + batch.count < todo.count, todo[i + batch.count] / batchSize == block { batch.append(todo[i + batch.count]) }
            var results: [GenerationResult] = []
            var j = 0
            while j < batch.count {   // consecutive runs within the block share one generate call
                var run = [batch[j]]
                while j + run.count < batch.count, batch[j + run.count] == run.last! + 1 { run.append(batch[j + run.count]) }
                var opts = options
                opts.seed = options.seed &+ UInt64(run[0])
                results += try generator.generate(promptTokens: run.map { items[$0].tokens }, options: opts)
                j += run.count
            }
            var lines: [JSONValue] = []
            for (k, r) in zip(batch, results) {
                let item = items[k]
                var fields: [(key: String, value: JSONValue)] = [
                    ("id", item.id), ("question", .string(item.question)), ("output", .string(r.text)),
                    ("finish_reason", .string(r.finishReason.rawValue)), ("prompt_tokens", .int(r.promptTokenCount)),
                    ("output_tokens", .int(r.tokens.count)), ("model", .string(modelName)),
                ]
                if let ref = item.reference { fields.append(("reference", .string(ref))) }
                lines.append(.object(fields))
                tokens += r.tokens.count
            }
            try file.append(lines)
            written += batch.count
            i += batch.count
            progress?(done.count + written, items.count)
        }
        return Outcome(resumed: done.count, written: written, generatedTokens: tokens, seconds: Date().timeIntervalSince(start))
    }
}
