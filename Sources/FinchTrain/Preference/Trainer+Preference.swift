import FinchModels
import Foundation

extension Trainer {
    /// An optimizer step of preference training: for each of this rank's micro-batches of pairs,
    /// the reference pass and the policy's forward and backward under the loss, scaled by
    /// 1 / (grad_accum × ranks) as the Hugging Face trainer divides each micro-batch's mean loss
    /// (and DDP averages the ranks); the logged loss is the mean of the micro-batch losses and the
    /// metrics are means over the step's pairs (TRL's averages over equal micro-batches).
    func preferenceStep(_ step: Int, objective p: PreferenceObjective, micro: [[Int]], mine: [[Int]], buffers: StepBuffers,
                        lastCheckpoint: String?) throws -> StepOutcome {
        let ranks = world?.size ?? 1, rank = world?.rank ?? 0
        let names = p.metricNames
        var loss = LossSum()
        var extra = [Double](repeating: 0, count: names.count + 1)   // metric sums, then pairs
        for (k, batch) in mine.enumerated() {
            if k > 0 { model.zeroGradients() }
            let options = TrainingPassOptions(checkpointing: config.gradientCheckpointing,
                                              dropoutKey: dropoutKey(step: step, micro: rank * config.gradAccum + k))
            let b = try p.train(model: model, pairs: batch.map { pairs[$0] }, scale: 1 / Double(config.gradAccum * ranks),
                                options: options, trained: adapterName)
            loss = loss + LossSum(sum: b.loss, count: 1)
            for (i, n) in names.enumerated() { extra[i] += b.metricSums[n] ?? 0 }
            extra[names.count] += Double(b.pairs)
            accumulate(microBatch: k, buffers: buffers)
        }
        finishAccumulation(buffers)
        let (summedLoss, norm, lr, summed) = try update(step, loss: loss, extra: &extra, counted: true, buffers: buffers,
                                                        lastCheckpoint: lastCheckpoint)
        var metrics: [String: Double] = [:]
        for (i, n) in names.enumerated() { metrics[n] = extra[i] / max(1, extra[names.count]) }
        let tokens = micro.reduce(0) { $0 + $1.reduce(0) { $0 + p.rows(pairs[$1]) } }
        return StepOutcome(loss: summedLoss.mean, learningRate: lr, gradNorm: norm, tokens: tokens, ranks: summed, objective: metrics)
    }
}
