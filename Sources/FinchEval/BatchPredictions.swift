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

    /// The ids already answered in `path` (as compact JSON), after cutting off a last line that
    /// a stopped run left half-written.
    public static func answeredIds(path: String) throws -> Set<String> {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.badInput("\(path): cannot read the answers file; check its permissions")
        }
        var bytes = [UInt8](data)
        if let lastNewline = bytes.lastIndex(of: 0x0A), lastNewline + 1 < bytes.count {
            bytes.removeSubrange((lastNewline + 1)...)
            guard truncate(path, off_t(bytes.count)) == 0 else {
                throw ModelError.badInput("\(path): cannot cut off its unfinished last line (errno \(errno))")
            }
        } else if !bytes.contains(0x0A) && !bytes.isEmpty {
            bytes = []
            _ = truncate(path, 0)
        }
        var ids = Set<String>()
        for (n, line) in bytes.split(separator: 0x0A).enumerated() {
            guard let v = try? JSONParser.parse(Array(line)), let id = v["id"] else {
                throw ModelError.badInput("\(path):\(n + 1): not an answer line (a JSON object with \"id\"); "
                    + "use another --output, or delete the file to start over")
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
        let done = try Self.answeredIds(path: output)
        if let stray = done.first(where: { !known.contains($0) }) {
            throw ModelError.badInput("\(output) holds an answer for id \(stray), which is not in the data; "
                + "it belongs to another dataset: use another --output")
        }
        let todo = items.indices.filter { !done.contains(items[$0].id.serialized()) }
        if !FileManager.default.fileExists(atPath: output) {
            guard FileManager.default.createFile(atPath: output, contents: nil) else {
                throw ModelError.badInput("\(output): cannot create the answers file; check the directory")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: output) else {
            throw ModelError.badInput("\(output): cannot open the answers file for writing")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
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
            var text = ""
            for (k, r) in zip(batch, results) {
                let item = items[k]
                var fields: [(key: String, value: JSONValue)] = [
                    ("id", item.id), ("question", .string(item.question)), ("output", .string(r.text)),
                    ("finish_reason", .string(r.finishReason.rawValue)), ("prompt_tokens", .int(r.promptTokenCount)),
                    ("output_tokens", .int(r.tokens.count)), ("model", .string(modelName)),
                ]
                if let ref = item.reference { fields.append(("reference", .string(ref))) }
                text += JSONValue.object(fields).serialized() + "\n"
                tokens += r.tokens.count
            }
            try handle.write(contentsOf: Data(text.utf8))
            try handle.synchronize()
            written += batch.count
            i += batch.count
            progress?(done.count + written, items.count)
        }
        return Outcome(resumed: done.count, written: written, generatedTokens: tokens, seconds: Date().timeIntervalSince(start))
    }
}
