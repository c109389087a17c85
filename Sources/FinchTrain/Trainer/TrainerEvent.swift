import Foundation

/// Figures of one optimizer step (a line of the run's metrics.jsonl).
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    /// Epochs completed, fractional (step / optimizer steps per epoch).
    public var epoch: Double
    /// Mean loss over the step's counted tokens (all accumulated micro-batches).
    public var loss: Double
    public var learningRate: Double
    /// Gradient norm before clipping.
    public var gradNorm: Double
    /// Tokens processed (all rows, counted or not) and the wall time of the step.
    public var tokens: Int
    public var seconds: Double
    public var tokensPerSecond: Double
    public var peakRSSMiB: Double
    /// Distributed runs: seconds this rank spent summing gradients and losses across ranks (the
    /// communication, waiting for slower ranks included) and the bytes of gradients it sent.
    public var commSeconds: Double? = nil
    public var commBytes: Int? = nil
    /// Preference training: TRL's metrics of the step under their names (`rewards/chosen`, …).
    public var objective: [String: Double] = [:]

    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, learningRate = "lr", gradNorm = "grad_norm", tokens, seconds
        case tokensPerSecond = "tokens_per_s", peakRSSMiB = "peak_rss_mib", commSeconds = "comm_seconds", commBytes = "comm_bytes"
    }

    public init(step: Int, epoch: Double, loss: Double, learningRate: Double, gradNorm: Double, tokens: Int, seconds: Double,
                tokensPerSecond: Double, peakRSSMiB: Double, commSeconds: Double? = nil, commBytes: Int? = nil,
                objective: [String: Double] = [:]) {
        self.step = step; self.epoch = epoch; self.loss = loss; self.learningRate = learningRate; self.gradNorm = gradNorm
        self.tokens = tokens; self.seconds = seconds; self.tokensPerSecond = tokensPerSecond; self.peakRSSMiB = peakRSSMiB
        self.commSeconds = commSeconds; self.commBytes = commBytes; self.objective = objective
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step); try c.encode(epoch, forKey: .epoch); try c.encode(loss, forKey: .loss)
        try c.encode(learningRate, forKey: .learningRate); try c.encode(gradNorm, forKey: .gradNorm); try c.encode(tokens, forKey: .tokens)
        try c.encode(seconds, forKey: .seconds); try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(peakRSSMiB, forKey: .peakRSSMiB)
        try c.encodeIfPresent(commSeconds, forKey: .commSeconds); try c.encodeIfPresent(commBytes, forKey: .commBytes)
        var extra = encoder.container(keyedBy: EvalMetrics.Key.self)
        for (k, v) in objective where v.isFinite { try extra.encode(v, forKey: EvalMetrics.Key(k)) }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step); epoch = try c.decode(Double.self, forKey: .epoch)
        loss = try c.decode(Double.self, forKey: .loss); learningRate = try c.decode(Double.self, forKey: .learningRate)
        gradNorm = try c.decode(Double.self, forKey: .gradNorm); tokens = try c.decode(Int.self, forKey: .tokens)
        seconds = try c.decode(Double.self, forKey: .seconds); tokensPerSecond = try c.decode(Double.self, forKey: .tokensPerSecond)
        peakRSSMiB = try c.decode(Double.self, forKey: .peakRSSMiB)
        commSeconds = try c.decodeIfPresent(Double.self, forKey: .commSeconds); commBytes = try c.decodeIfPresent(Int.self, forKey: .commBytes)
        let extra = try decoder.container(keyedBy: EvalMetrics.Key.self)
        let known = Set(["step", "epoch", "loss", "lr", "grad_norm", "tokens", "seconds", "tokens_per_s", "peak_rss_mib", "comm_seconds", "comm_bytes"])
        for k in extra.allKeys where !known.contains(k.stringValue) {
            if let v = try? extra.decode(Double.self, forKey: k) { objective[k.stringValue] = v }
        }
    }
}

/// An evaluation's result: the held-out loss (when there is held-out data) and the scores of
/// the trainer's evaluators (e.g. `mmlu_eval_accuracy`), one line of metrics.jsonl.
public struct EvalMetrics: Sendable, Codable, Equatable {
    public var step: Int
    /// Mean loss and perplexity on the held-out examples; nil without any.
    public var loss: Double?
    public var perplexity: Double?
    /// Held-out tokens counted (0 without any).
    public var tokens: Int
    /// Named scores of the evaluators, written under their names.
    public var scores: [String: Double]

    public init(step: Int, loss: Double?, perplexity: Double?, tokens: Int, scores: [String: Double] = [:]) {
        self.step = step; self.loss = loss; self.perplexity = perplexity; self.tokens = tokens; self.scores = scores
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    static let fixed: Set<String> = ["step", "eval_loss", "eval_ppl", "eval_tokens"]

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(step, forKey: Key("step"))
        try c.encode(tokens, forKey: Key("eval_tokens"))
        if let loss, loss.isFinite { try c.encode(loss, forKey: Key("eval_loss")) }
        if let perplexity, perplexity.isFinite { try c.encode(perplexity, forKey: Key("eval_ppl")) }
        for (k, v) in scores where v.isFinite { try c.encode(v, forKey: Key(k)) }
    }

    /// Reads a metrics.jsonl evaluation line (one with `eval_tokens`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        step = try c.decode(Int.self, forKey: Key("step"))
        tokens = try c.decode(Int.self, forKey: Key("eval_tokens"))
        loss = try c.decodeIfPresent(Double.self, forKey: Key("eval_loss"))
        perplexity = try c.decodeIfPresent(Double.self, forKey: Key("eval_ppl"))
        scores = [:]
        for k in c.allKeys where !Self.fixed.contains(k.stringValue) {
            if let v = try? c.decode(Double.self, forKey: k) { scores[k.stringValue] = v }
        }
    }
}

/// An evaluation run at every evaluation beside the held-out loss (MMLU, ...), returning named
/// scores for metrics.jsonl. It runs on the trainer's thread between steps, with the adapter
/// being trained active.
public protocol TrainingEvaluator: AnyObject {
    func evaluate(step: Int) throws -> [String: Double]
}

/// What a finished (or stopped) run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    public var totalSteps: Int
    public var losses: [Double]
    public var lastEval: EvalMetrics?
    /// Stopped early by `Trainer.requestStop()` (a checkpoint was written).
    public var interrupted: Bool
    /// Where the final adapter (or, when interrupted, the checkpoint) was written.
    public var outputPath: String?
    public var seconds: Double
}

/// Progress reports of a run, for a progress bar, a log, or a server's events.
public enum TrainerEvent: Sendable {
    case started(totalSteps: Int, startStep: Int, trainExamples: Int, evalExamples: Int, trainableParameters: Int)
    case step(StepMetrics, totalSteps: Int)
    case evaluation(EvalMetrics)
    case checkpoint(step: Int, path: String)
    case finished(TrainingSummary)
}
