import FinchModels
import Foundation

extension Trainer {
    /// An optimizer step of preference training: for each of this rank's micro-batches, the
    /// reference pass and the policy's forward and backward under the loss, scaled by
    /// 1 / (grad_accum × ranks) as the Hugging Face trainer divides each micro-batch's mean loss
    /// (and DDP averages the ranks); the logged loss is the mean of the micro-batch losses and each
    /// metric the weighted mean of the micro-batches' (over the step's pairs; KTO: over the
    /// micro-batches that logged it, as TRL averages its lists).
    func preferenceStep(_ step: Int, objective p: PreferenceObjective, micro: [[Int]], mine: [[Int]], buffers: StepBuffers,
                        lastCheckpoint: String?) throws -> StepOutcome {
        let ranks = world?.size ?? 1, rank = world?.rank ?? 0
        let names = p.metricNames
        var loss = LossSum()
        var extra = [Double](repeating: 0, count: 2 * names.count)   // metric sums, then their weights
        for (k, batch) in mine.enumerated() {
            if k > 0 { model.zeroGradients() }
            let options = TrainingPassOptions(checkpointing: config.gradientCheckpointing,
                                              dropoutKey: dropoutKey(step: step, micro: rank * config.gradAccum + k))
            let b = try p.train(model: model, examples: examples[batch], scale: 1 / Double(config.gradAccum * ranks),
                                options: options, trained: adapterName)
            loss = loss + LossSum(sum: b.loss, count: 1)
            for (i, n) in names.enumerated() {
                if let m = b.metrics[n] { extra[i] += m.sum; extra[names.count + i] += m.count }
            }
            accumulate(microBatch: k, buffers: buffers)
        }
        finishAccumulation(buffers)
        let (summedLoss, norm, lr, summed) = try update(step, loss: loss, extra: &extra, counted: true, buffers: buffers,
                                                        lastCheckpoint: lastCheckpoint)
        var metrics: [String: Double] = [:]
        for (i, n) in names.enumerated() where extra[names.count + i] > 0 { metrics[n] = extra[i] / extra[names.count + i] }
        let tokens = micro.reduce(0) { $0 + $1.reduce(0) { $0 + p.rows(examples, $1) } }
        return StepOutcome(loss: summedLoss.mean, learningRate: lr, gradNorm: norm, tokens: tokens, ranks: summed, objective: metrics)
    }
}
