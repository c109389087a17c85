import Foundation

/// The files of a training run's directory besides checkpoints: the resolved settings
/// (`train_config.json`), one JSON line per logged step and evaluation (`metrics.jsonl`), and
/// the loss curve (`loss.svg`), rewritten as the run goes; with `report_to: tensorboard`, the same
/// figures as TensorBoard event files (`TensorBoardLog`). Like metrics.jsonl, the logs are written
/// as well as they can be: a failure to write one does not stop training.
public final class RunDirectory: @unchecked Sendable {
    public let path: String
    private(set) var steps: [StepMetrics] = []
    private(set) var evals: [EvalMetrics] = []
    private var tensorBoard: TensorBoardLog?

    public init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Rewrites progress.json (by rename: a reader sees the old or the new one), at most every quarter
    /// second unless `force`.
    func writeProgress(_ p: RunProgress, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(lastProgress) >= 0.25 else { return }
        lastProgress = now
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        try? e.encode(p).write(to: URL(fileURLWithPath: file(RunProgress.fileName)), options: .atomic)
    }
    private var lastProgress = Date.distantPast

    func writeConfig(_ config: TrainingConfig) throws {
        try config.jsonData().write(to: URL(fileURLWithPath: file("train_config.json")), options: .atomic)
    }

    /// Keeps the metrics of steps ≤ `step` (a resumed run continues the same file).
    func truncate(after step: Int) {
        let lines = (try? String(contentsOfFile: file("metrics.jsonl"), encoding: .utf8))?.split(separator: "\n") ?? []
        let d = JSONDecoder()
        var kept: [Substring] = []
        for line in lines {
            let data = Data(line.utf8)
            if let m = try? d.decode(StepMetrics.self, from: data), m.step <= step { steps.append(m); kept.append(line) }
            else if let e = try? d.decode(EvalMetrics.self, from: data), e.step <= step { evals.append(e); kept.append(line) }
        }
        try? (kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n"))
            .write(toFile: file("metrics.jsonl"), atomically: true, encoding: .utf8)
    }

    /// Starts the TensorBoard log of a run that goes on after `step` (0: from the start).
    func startTensorBoard(after step: Int, config: TrainingConfig) throws {
        tensorBoard = try TensorBoardLog(runDirectory: path, resumingAfter: step,
                                         settingsJSON: String(decoding: try config.jsonData(), as: UTF8.self))
    }

    func append(_ m: StepMetrics) {
        steps.append(m); appendLine(m)
        try? tensorBoard?.log(step: m.step, TensorBoardLog.scalars(m))
    }
    func append(_ e: EvalMetrics) {
        evals.append(e); appendLine(e)
        try? tensorBoard?.log(step: e.step, TensorBoardLog.scalars(e))
    }

    private func appendLine(_ value: some Encodable) {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var data = try? e.encode(value) else { return }
        data.append(0x0A)
        let url = URL(fileURLWithPath: file("metrics.jsonl"))
        if let h = try? FileHandle(forWritingTo: url) {
            h.seekToEndOfFile(); h.write(data); try? h.close()
        } else {
            try? data.write(to: url)
        }
    }

    /// Rewrites loss.svg from the metrics so far.
    func drawLossCurve() {
        // The right axis: MMLU's accuracy when evaluated; for DPO, SimPO and ORPO the held-out reward
        // accuracy, or without evaluations the training one of each step.
        var accuracy = evals.compactMap { e in e.scores["mmlu_eval_accuracy"].map { (e.step, $0) } }, label = "MMLU accuracy"
        if accuracy.isEmpty {
            accuracy = evals.compactMap { e in e.scores["eval_rewards/accuracies"].map { (e.step, $0) } }; label = "eval reward accuracy"
        }
        if accuracy.isEmpty {
            accuracy = steps.compactMap { m in m.objective["rewards/accuracies"].map { (m.step, $0) } }; label = "reward accuracy"
        }
        let svg = LossCurve.svg(train: steps.map { ($0.step, $0.loss) }, eval: evals.compactMap { e in e.loss.map { (e.step, $0) } },
                                accuracy: accuracy, accuracyLabel: label)
        try? svg.write(toFile: file("loss.svg"), atomically: true, encoding: .utf8)
    }
}

/// Where a run is (`progress.json` in its directory, rewritten as it goes): what the live training page
/// reads for the step counter, the progress bar and the ETA.
public struct RunProgress: Codable, Sendable, Equatable {
    public static let fileName = "progress.json"
    public enum Status: String, Codable, Sendable { case running, finished, interrupted, failed }
    public var status: Status
    public var step: Int
    public var totalSteps: Int
    /// The step this process started at (0, or the step resumed from).
    public var startStep: Int
    /// Seconds since 1970 when this process started training, and of this update.
    public var startedAt: Double
    public var updatedAt: Double
    public var etaSeconds: Double?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case status, step, totalSteps = "total_steps", startStep = "start_step", startedAt = "started_at", updatedAt = "updated_at"
        case etaSeconds = "eta_seconds", error
    }

    public init(status: Status, step: Int, totalSteps: Int, startStep: Int, startedAt: Double, updatedAt: Double,
                etaSeconds: Double? = nil, error: String? = nil) {
        self.status = status; self.step = step; self.totalSteps = totalSteps; self.startStep = startStep
        self.startedAt = startedAt; self.updatedAt = updatedAt; self.etaSeconds = etaSeconds; self.error = error
    }
}
