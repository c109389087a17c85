import FinchFormats
import Foundation

/// `report_to: tensorboard`: the lines of metrics.jsonl as TensorBoard scalars, in event files under
/// `RUN_DIR/runs` (`tensorboard --logdir RUN_DIR`), and the run's settings (train_config.json) as the
/// text "args", as transformers' TensorBoardCallback writes them.
///
/// Tags follow transformers' names (`rewrite_logs`): a step line's key `k` is `train/k` (`lr` as
/// `train/learning_rate`; TRL's preference metrics as `train/rewards/chosen`, …), an evaluation
/// line's is `eval/k` without its `eval_` prefix (`eval_loss` → `eval/loss`, `eval_ppl` →
/// `eval/perplexity`, `eval_rewards/accuracies` → `eval/rewards/accuracies`, `mmlu_eval_accuracy`
/// as it is under `eval/`). Every process start writes a new file that begins with a session start at
/// the first step it will log, so TensorBoard drops what a killed run had logged past its last checkpoint,
/// as metrics.jsonl does.
final class TensorBoardLog {
    let writer: TensorBoardEventWriter

    /// The folder under the run directory that holds the event files.
    static let folder = "runs"

    init(runDirectory: String, resumingAfter step: Int, settingsJSON: String) throws {
        writer = try TensorBoardEventWriter(directory: (runDirectory as NSString).appendingPathComponent(Self.folder))
        let now = Date().timeIntervalSince1970
        try writer.write(TensorBoardEvent(wallTime: now, step: Int64(step + 1), content: .sessionStart))
        try writer.write(TensorBoardEvent(wallTime: now, step: Int64(step), content: .summary([.text(tag: "args", text: settingsJSON)])))
    }

    /// The tag and value of each figure of a step line.
    static func scalars(_ m: StepMetrics) -> [(String, Double)] {
        var out: [(String, Double)] = [
            ("train/loss", m.loss), ("train/learning_rate", m.learningRate), ("train/grad_norm", m.gradNorm), ("train/epoch", m.epoch),
            ("train/tokens", Double(m.tokens)), ("train/seconds", m.seconds), ("train/tokens_per_s", m.tokensPerSecond),
            ("train/peak_rss_mib", m.peakRSSMiB),
        ]
        if let s = m.commSeconds { out.append(("train/comm_seconds", s)) }
        if let b = m.commBytes { out.append(("train/comm_bytes", Double(b))) }
        out += m.objective.sorted { $0.key < $1.key }.map { ("train/" + $0.key, $0.value) }
        return out.filter { $0.1.isFinite }
    }

    /// The tag and value of each figure of an evaluation line.
    static func scalars(_ e: EvalMetrics) -> [(String, Double)] {
        var out: [(String, Double)] = [("eval/tokens", Double(e.tokens))]
        if let l = e.loss { out.append(("eval/loss", l)) }
        if let p = e.perplexity { out.append(("eval/perplexity", p)) }
        for (k, v) in e.scores.sorted(by: { $0.key < $1.key }) {
            out.append(("eval/" + (k.hasPrefix("eval_") ? String(k.dropFirst(5)) : k), v))
        }
        return out.filter { $0.1.isFinite }
    }

    func log(step: Int, _ scalars: [(String, Double)]) throws {
        try writer.write(TensorBoardEvent(wallTime: Date().timeIntervalSince1970, step: Int64(step),
                                          content: .summary(scalars.map { .scalar(tag: $0.0, value: Float($0.1)) })))
    }
}
