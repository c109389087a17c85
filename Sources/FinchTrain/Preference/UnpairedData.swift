import FinchCore
import FinchFormats
import FinchModels
import FinchTokenizer

/// One example of KTO's unpaired data, tokenized as TRL 1.16's `KTOTrainer` tokenizes it: a prompt,
/// a completion, and whether the completion is desirable; and the completion of another example of
/// its batch that scores the KL estimate (TRL's `KL_completion_ids`).
public struct UnpairedExample: Sendable, Equatable {
    public var prompt: [Int32]
    public var completion: [Int32]
    public var desirable: Bool
    /// The mismatched completion (set by `assignKLCompletions`).
    public var klCompletion: [Int32] = []
    /// The reference model's log-probabilities of the completion and of the KL completion, when
    /// computed before training (`precompute_ref_log_probs`).
    public var referenceLogProb: Double?
    public var referenceKL: Double?

    public init(prompt: [Int32], completion: [Int32], desirable: Bool) {
        self.prompt = prompt; self.completion = completion; self.desirable = desirable
    }

    /// Prompt + completion as the model sees it (TRL's `DataCollatorForUnpairedPreference`): labels
    /// on the completion, the first `maxLength` tokens kept.
    public func sequence(maxLength: Int?) -> TrainingSequence {
        PreferencePair.sequence(prompt: prompt, completion: completion, maxLength: maxLength, truncation: .keepStart).sequence
    }

    /// Prompt + the mismatched completion, the same way.
    public func klSequence(maxLength: Int?) -> TrainingSequence {
        PreferencePair.sequence(prompt: prompt, completion: klCompletion, maxLength: maxLength, truncation: .keepStart).sequence
    }

    /// Gives each example the completion of the example before it in its batch (the first takes the
    /// batch's last), in consecutive batches of `batchSize` from the start: TRL's rotation, which
    /// pairs each prompt with another completion of the same batch when batches are taken in order.
    public static func assignKLCompletions(_ examples: inout [UnpairedExample], batchSize: Int) {
        var start = 0
        while start < examples.count {
            let end = min(start + batchSize, examples.count)
            let completions = examples[start..<end].map(\.completion)
            for i in start..<end { examples[i].klCompletion = completions[(i - start + completions.count - 1) % completions.count] }
            start = end
        }
    }
}

extension PreferenceData {
    /// How many paired records TRL's `unpair_preference_dataset` takes at once (`datasets`' `map`
    /// batch size): each such block gives all its chosen answers, then all its rejected ones.
    static let unpairBlock = 1000

    /// Reads KTO's data from a JSON / JSON-lines file, as TRL 1.16's `KTOTrainer` prepares it:
    /// - unpaired: `{"prompt", "completion", "label"}`, prompt and completion as text or message lists,
    ///   label true (desirable) or false;
    /// - paired (any format `load` reads): each pair gives a desirable and an undesirable example,
    ///   TRL's unpairing order (per block of 1000 records, the chosen answers, then the rejected).
    /// Each completion starts where its tokenized prompt and prompt + completion part. An example
    /// whose prompt alone fills `maxLength` is left out. KL completions are not yet assigned.
    public static func loadUnpaired(path: String, tokenizer: Tokenizer, maxLength: Int?) throws -> LoadedPreferences {
        let records = try DataFileReader.records(path: path)
        var out = LoadedPreferences()
        out.recordCount = records.count
        var examples: [UnpairedExample] = []
        var block: [(record: DataRecord, chosen: UnpairedExample, rejected: UnpairedExample)] = []
        func flush() { examples += block.map(\.chosen) + block.map(\.rejected); block.removeAll() }
        var isUnpaired = false
        for (i, record) in records.enumerated() {
            guard record.value.objectValue != nil else { throw record.malformed(path, "a KTO record must be an object") }
            let unpairedRecord = record.value["completion"] != nil || record.value["label"] != nil
            if i == 0 { isUnpaired = unpairedRecord } else if unpairedRecord != isUnpaired {
                throw record.malformed(path, "this record is \(unpairedRecord ? "unpaired (prompt, completion, label)" : "a pair (chosen, rejected)") but the first was \(isUnpaired ? "unpaired" : "a pair"); use one format per file")
            }
            if unpairedRecord {
                examples.append(try unpaired(record, path: path, tokenizer: tokenizer, conversational: &out.conversational, first: i == 0))
            } else {
                let (prompt, chosen, rejected) = try pairParts(record, path: path, conversational: &out.conversational, first: i == 0)
                block.append((record, try example(prompt, chosen, desirable: true, record: record, path: path, tokenizer: tokenizer),
                              try example(prompt, rejected, desirable: false, record: record, path: path, tokenizer: tokenizer)))
                if block.count == unpairBlock { flush() }
            }
        }
        flush()
        for e in examples {
            if let maxLength, e.prompt.count >= maxLength { out.droppedCount += 1; continue }
            if let maxLength, e.prompt.count + e.completion.count > maxLength { out.truncatedCount += 1 }
            out.unpaired.append(e)
        }
        if out.unpaired.isEmpty { throw DataError.emptyDataset(path: path, dropped: out.droppedCount) }
        return out
    }

    static func unpaired(_ record: DataRecord, path: String, tokenizer: Tokenizer, conversational: inout Bool, first: Bool) throws -> UnpairedExample {
        for key in ["prompt", "completion", "label"] where record.value[key] == nil {
            throw record.malformed(path, "missing key \"\(key)\"; an unpaired (KTO) record needs \"prompt\", \"completion\" and \"label\" "
                + "(keys here: \(record.keys.joined(separator: ", ")))")
        }
        guard let label = record.value["label"]?.boolValue else {
            throw record.malformed(path, "key \"label\" is \(record.value["label"]!.kindName); it must be true (a desirable completion) or false")
        }
        let prompt = try part(record, "prompt", path: path), completion = try part(record, "completion", path: path)
        try checkFormat([prompt, completion], keys: "\"prompt\" and \"completion\"", record: record, path: path,
                        conversational: &conversational, first: first)
        return try example(prompt, completion, desirable: label, record: record, path: path, tokenizer: tokenizer)
    }

    static func example(_ prompt: Part, _ completion: Part, desirable: Bool, record: DataRecord, path: String,
                        tokenizer: Tokenizer) throws -> UnpairedExample {
        let t = try tokenize(prompt: prompt, answer: completion, record: record, path: path, tokenizer: tokenizer)
        let start = commonPrefix(t.prompt, t.full)
        let e = UnpairedExample(prompt: Array(t.prompt.prefix(start)), completion: Array(t.full.dropFirst(start)), desirable: desirable)
        if e.completion.isEmpty {
            throw record.malformed(path, "the \(desirable ? "desirable" : "undesirable") completion has no tokens after the prompt; give it some text")
        }
        return e
    }
}
