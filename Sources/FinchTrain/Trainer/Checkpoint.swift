import FinchCore
import FinchFormats
import FinchLoRA
import FinchTokenizer
import Foundation

/// What a checkpoint records besides the adapter and optimizer state (`trainer_state.json`).
public struct TrainerState: Codable, Sendable, Equatable {
    public var globalStep: Int
    public var totalSteps: Int
    public var sampler: BatchSampler.State
    /// Fingerprint of the training examples (their tokens and labels) and their count, so a
    /// resume with other data is refused instead of silently diverging.
    public var dataFingerprint: String
    public var trainExamples: Int
    public var losses: [Double]
    public var seconds: Double
    public var config: TrainingConfig
    /// Ranks of the run that wrote it (absent: one process); a resume needs as many, since each
    /// step draws world × grad_accum micro-batches.
    public var worldSize: Int? = nil
    /// How bf16 products were computed (`native` or `f32`, GEMM.BF16Compute); a resume computes
    /// them the same way, so that its bits equal the uninterrupted run's on any machine.
    public var bf16Compute: String? = nil

    enum CodingKeys: String, CodingKey {
        case globalStep = "global_step", totalSteps = "total_steps", sampler, dataFingerprint = "data_fingerprint"
        case trainExamples = "train_examples", losses, seconds, config, worldSize = "world_size"
        case bf16Compute = "bf16_compute"
    }
}

/// A checkpoint directory `checkpoint-<step>`: `adapter_config.json`, `adapter_model.safetensors`
/// (PEFT's format, usable as an adapter on its own), `optimizer.safetensors`, `trainer_state.json`.
/// Written into a hidden sibling first and renamed into place (``AtomicDirectory``), so a checkpoint is
/// either whole or absent.
public enum Checkpoint {
    public static let prefix = "checkpoint-"

    /// Writes a checkpoint of `step` into `runDirectory` (replacing one of the same step); returns its path.
    /// ``AtomicDirectory`` publishes it whole: a failed write (a full disk) leaves the earlier checkpoints as
    /// they were and nothing else, and what a kill leaves is hidden (`.checkpoint-…`, see `removeLeftovers`).
    static func write(runDirectory: String, step: Int, adapter: LoRAAdapter, optimizer: any Optimizer,
                      state: TrainerState, tokenizer: Tokenizer? = nil) throws -> String {
        let final = (runDirectory as NSString).appendingPathComponent(prefix + String(step))
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let stateBytes = try e.encode(state)
        try AtomicDirectory.write(to: final) { partial in
            try adapter.save(to: partial)
            try tokenizer?.writeTokenizerJSON(to: partial)
            try optimizer.save(to: (partial as NSString).appendingPathComponent("optimizer.safetensors"))
            try AtomicFile.write(to: (partial as NSString).appendingPathComponent("trainer_state.json")) { try $0.write([UInt8](stateBytes)) }
        }
        return final
    }

    /// Checkpoints in a run directory, oldest (lowest step) first.
    public static func list(runDirectory: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix(prefix), let s = Int(n.dropFirst(prefix.count)) else { return nil }
            return (s, (runDirectory as NSString).appendingPathComponent(n))
        }.sorted { $0.0 < $1.0 }
    }

    /// Deletes the oldest checkpoints beyond `limit`: each is renamed out of view first (one
    /// atomic rename), then removed, so a kill during the removal never leaves a half checkpoint
    /// that looks whole.
    static func rotate(runDirectory: String, limit: Int?) {
        guard let limit else { return }
        let all = list(runDirectory: runDirectory)
        for c in all.dropLast(limit) {
            let hidden = (runDirectory as NSString).appendingPathComponent(".\((c.path as NSString).lastPathComponent).deleting")
            if (try? FileManager.default.moveItem(atPath: c.path, toPath: hidden)) != nil {
                try? FileManager.default.removeItem(atPath: hidden)
            }
        }
    }

    /// Removes what an interrupted checkpoint write or rotation left (hidden `.checkpoint-*`
    /// entries: partial, replaced or half-deleted directories). Called when a run starts.
    static func removeLeftovers(runDirectory: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
        for n in names where n.hasPrefix("." + prefix) {
            try? FileManager.default.removeItem(atPath: (runDirectory as NSString).appendingPathComponent(n))
        }
    }

    /// The checkpoint a `--resume` path names: a checkpoint directory itself, or a run
    /// directory (its latest checkpoint).
    public static func resolve(_ path: String) throws -> String {
        let fm = FileManager.default
        if fm.fileExists(atPath: (path as NSString).appendingPathComponent("trainer_state.json")) { return path }
        if let last = list(runDirectory: path).last { return last.path }
        throw TrainError.badCheckpoint(path: path, reason: "neither a checkpoint (no trainer_state.json) nor a run directory with checkpoint-N folders")
    }

    /// Reads a checkpoint's trainer state.
    public static func readState(_ checkpoint: String) throws -> TrainerState {
        let path = (checkpoint as NSString).appendingPathComponent("trainer_state.json")
        do {
            return try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TrainError.badCheckpoint(path: path, reason: "unreadable trainer state (\(error))")
        }
    }
}
