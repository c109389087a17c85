import FinchCore
import FinchModels
import Foundation

/// Predicted peak resident memory of a training run, by part (bytes): `finch train --dry-run`.
/// The process baseline (runtime, libraries, tokenizer, dataset, the model file's mapped pages)
/// is measured after loading; the rest is computed from the model, the adapter, the optimizer
/// and the largest micro-batch the run will see.
public struct TrainingMemoryPlan: Sendable {
    /// Frozen base weights (4-bit blocks, or f32 / bf16).
    public var baseWeights: Int
    /// A mixture of experts: the experts' share of `baseWeights` and what one token reads of it.
    public var experts: ExpertWeightBytes? = nil
    /// Adapter values (LoRA A and B, DoRA magnitudes, modules_to_save copies, trainable tokens'
    /// rows and the embedding holding them with its gradient), f32.
    public var adapters: Int
    /// Their gradients, f32 (with the per-step sums of grad_accum > 1 and the flat buffer the
    /// ranks of a distributed run sum: one more copy each).
    public var gradients: Int
    /// Optimizer state (paged state counts too: its pages are resident until the OS evicts them).
    public var optimizerState: Int
    /// Saved activations and backward buffers, and the largest temporaries of a step.
    public var activations: TrainingActivationBytes
    /// Writing the adapter (a checkpoint, the output): its tensors' bytes, held while the file is written.
    public var saving: Int = 0
    /// Measured resident memory after loading, less the base weights.
    public var processBaseline: Int
    /// Rows (tokens) of the largest micro-batch the run will see.
    public var maxRows: Int
    public var checkpointing: Bool

    public var total: Int {
        baseWeights + adapters + gradients + optimizerState + activations.total + saving + processBaseline
    }

    /// A small table in MiB.
    public var summary: String {
        func mib(_ b: Int) -> String { String(format: "%8.1f MiB", Double(b) / 1_048_576) }
        var expertLine = ""
        if let e = experts {
            expertLine = "\n    of which experts \(mib(e.all))  (a token reads \(mib(e.perToken).trimmingCharacters(in: .whitespaces)), its top-k; "
                + (e.mapped ? "mapped from the GGUF file, experts no token picks are never read, counted in full here)" : "all held in memory)")
        }
        return """
              base weights       \(mib(baseWeights))\(expertLine)
              adapters           \(mib(adapters))
              gradients          \(mib(gradients))
              optimizer state    \(mib(optimizerState))
              activations        \(mib(activations.total))  (saved \(mib(activations.saved).trimmingCharacters(in: .whitespaces)), temporaries \(mib(activations.transient).trimmingCharacters(in: .whitespaces)); largest micro-batch \(maxRows) tokens)
              saving the adapter \(mib(saving))  (its tensors, held while a checkpoint or the output is written)
              process baseline   \(mib(processBaseline))  (runtime, libraries, tokenizer, data, mapped model file)
              predicted peak     \(mib(total))
            """
    }
}

extension Trainer {
    /// Rows of the largest micro-batch of the run (training batches in the sampler's order for
    /// every step, and evaluation batches).
    public var largestMicroBatchRows: Int {
        var s = samplerForPlanning
        var rows = 0
        for _ in 0..<(totalSteps * config.gradAccum) {
            rows = max(rows, s.next().indices.reduce(0) { sum, i in sum + (preference.map { $0.rows(examples, i) } ?? train[i].tokens.count) })
        }
        return rows
    }

    /// Rows of the largest evaluation batch (a preference batch packs both answers of its pairs).
    var largestEvalRows: Int {
        if let p = preference {
            return stride(from: 0, to: evalExamples.count, by: config.batchSize).map { start in
                (start..<min(start + config.batchSize, evalExamples.count)).reduce(0) { $0 + p.rows(evalExamples, $1) }
            }.max() ?? 0
        }
        return stride(from: 0, to: eval.count, by: config.batchSize).map { start in
            eval[start..<min(start + config.batchSize, eval.count)].reduce(0) { $0 + $1.tokens.count }
        }.max() ?? 0
    }

    /// The predicted peak of this run, given the resident memory measured after loading the model
    /// and data (before the trainer allocated its adapter and optimizer).
    public func memoryPlan(residentAfterLoading: Int, checkpointing: Bool) -> TrainingMemoryPlan {
        let params = optimizer.parameters.reduce(0) { $0 + $1.value.byteCount }
        // Trainable tokens compute with an f32 embedding holding their rows, and its gradient.
        let tokenEmbedding = model.activeTokenRows?.merged.map { 2 * $0.value.byteCount } ?? 0
        let trainRows = largestMicroBatchRows
        var acts = model.trainingActivationBytes(rows: trainRows, checkpointing: checkpointing, loraRank: adapterConfig.r)
        if !eval.isEmpty || !evalExamples.isEmpty {
            // Evaluation runs the checkpointing workspace; its buffers replace the training ones.
            let e = model.trainingActivationBytes(rows: largestEvalRows, checkpointing: true, loraRank: adapterConfig.r)
            acts.saved = max(acts.saved, e.saved); acts.transient = max(acts.transient, e.transient)
        }
        let weights = model.weightBytes
        let gradientCopies = 1 + (config.gradAccum > 1 ? 1 : 0) + ((world?.size ?? 1) > 1 ? 1 : 0)   // StepBuffers
        var plan = TrainingMemoryPlan(baseWeights: weights, adapters: params + tokenEmbedding, gradients: params * gradientCopies,
                                  optimizerState: optimizer.stateBytes, activations: acts,
                                  processBaseline: max(0, residentAfterLoading - weights),
                                  maxRows: trainRows, checkpointing: checkpointing)
        plan.experts = model.expertWeightBytes
        // The safetensors writer holds a file's tensors as bytes: the adapter's, and with checkpoints the optimizer state's.
        // A grown vocabulary saves the frozen embedding and head too, in f32 (beside a copy, the copy a second time).
        let copies = model.activeAdapter.flatMap { model.moduleCopies[$0] } ?? [:]
        let grown = model.vocabularyBeforeGrowth == nil ? 0 : model.copyableModules.reduce(0) { sum, m in
            sum + (copies[m.key] != nil ? 2 : 1) * m.value.outFeatures * m.value.inFeatures * MemoryLayout<Float>.size
        }
        plan.saving = config.saveSteps > 0 ? max(params + grown, optimizer.stateBytes) : params + grown
        return plan
    }
}
