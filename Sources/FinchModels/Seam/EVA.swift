import FinchCore
import FinchLoRA
import Foundation

// Dimension letters: N rows of a batch (the tokens whose inputs count), I a layer's in features, R a layer's rank.

/// A linear layer that computes as before and reads its input rows that count (`keep`, one flag per row of the
/// pass): their hash (EVA's test for layers with equal inputs, as PEFT's), or the rows themselves in float64.
final class InputRecorder: LinearLayer, @unchecked Sendable {
    enum Mode { case hash, collect }
    let layer: any LinearLayer
    let mode: Mode
    let keep: [Bool]
    /// Rows seen (of `keep`), the counted rows [n, I] (collect), their hash (hash).
    private(set) var seen = 0, counted = 0
    private(set) var rows: [Double] = []
    private(set) var hash = FNV1a()

    /// Called (collect mode) once every row of the pass has been read, with the counted rows; they are released after.
    var complete: ((_ rows: [Double], _ count: Int) -> Void)?

    init(_ layer: any LinearLayer, mode: Mode, keep: [Bool]) { self.layer = layer; self.mode = mode; self.keep = keep }

    var inFeatures: Int { layer.inFeatures }
    var outFeatures: Int { layer.outFeatures }
    var frozenWeight: LinearWeight { layer.frozenWeight }
    func wantsBF16Input(rows: Int) -> Bool { layer.wantsBF16Input(rows: rows) }

    func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xBF16: UnsafePointer<BF16Bits>?,
                 rows m: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        let i = inFeatures
        for r in 0..<m where seen + r < keep.count && keep[seen + r] {
            let row = UnsafeBufferPointer(start: x + r * i, count: i)
            switch mode {
            case .hash: for v in row { hash.combine(UInt64(v.bitPattern)) }
            case .collect: rows.append(contentsOf: row.lazy.map(Double.init))
            }
            counted += 1
        }
        seen += m
        if mode == .collect, seen >= keep.count, let complete {
            complete(rows, counted)
            rows = []
        }
        layer.forward(y: y, x: x, xBF16: xBF16, rows: m, accumulate: accumulate, scratch: scratch, context: context)
    }

    func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                  rows m: Int, accumulate: Bool, scratch: Scratch, context: PassContext) {
        layer.backward(dx: dx, dy: dy, x: x, rows: m, accumulate: accumulate, scratch: scratch, context: context)
    }
}

/// What EVA found: each target's rank (0: no adapter on it) and its A [R, I] (the leading components of its inputs,
/// divided by √(singular value) with whitening), and the passes over batches it took.
public struct EVAStart: Sendable {
    public var ranks: [String: Int]
    public var a: [String: [Float]]
    public var passes: Int

    /// `config` as PEFT leaves it after EVA: the targets with a rank, by full name; `rank_pattern` / `alpha_pattern`
    /// entries where a rank moved (alpha scaled by rank / r with `adjust_scaling_factors`); `init_lora_weights` eva.
    public func adapterConfig(_ config: AdapterConfig, modules: [String]) -> AdapterConfig {
        var c = config
        c.initLoRAWeights = "eva"
        c.rankPattern = [:]; c.alphaPattern = [:]
        var names: [String] = []
        for name in modules {
            let r0 = config.rank(for: name), rank = ranks[name] ?? r0
            guard rank > 0 else { continue }
            names.append(name)
            if rank != config.r { c.rankPattern[name] = rank }
            var alpha = config.loraAlpha(for: name)
            if rank != r0 && (config.eva?.adjustScalingFactors ?? true) { alpha *= Double(rank) / Double(r0) }
            if alpha != config.loraAlpha { c.alphaPattern[name] = alpha }
        }
        c.targetModules = .names(names)
        return c
    }
}

extension LoRAHost {
    /// PEFT's EVA (`initialize_lora_eva_weights`, init_lora_weights "eva"): the inputs of every linear `config`
    /// targets, over `batches` cycled in order, feed an incremental PCA per layer (`IncrementalPCA`, layers whose
    /// inputs are equal, as q / k / v, sharing one) of round(r·rho) components, counting only the tokens whose label is
    /// not masked (`use_label_mask`; all with it off), until every layer's components kept (its current rank's) point
    /// within cosine `tau` of the previous batch's; the ranks are redistributed after each batch: the largest explained
    /// variance ratios over all layers win, as many as the layers' ranks add up to. `forward` runs the model on a batch.
    /// - Throws: ``AdapterError/unsupported(_:)`` when the components do not settle within `maxPasses` batches.
    public func eva(config: AdapterConfig, batches: [[TrainingSequence]], maxPasses: Int = 2000,
                    forward: ([TrainingSequence]) throws -> Void) throws -> EVAStart {
        let settings = config.eva ?? AdapterConfig.EVASettings()
        guard !batches.isEmpty else { throw AdapterError.unsupported("init_lora_weights eva needs training data (there are no batches)") }
        let slots = linearSlots.filter { config.targets($0.name) }
        guard !slots.isEmpty else { throw AdapterError.unsupported("init_lora_weights eva: target_modules selects no layer") }
        let names = slots.map(\.name)
        var maxComponents: [String: Int] = [:], budget = 0
        for s in slots {
            let r = config.rank(for: s.name)
            maxComponents[s.name] = min(Int((Double(r) * settings.rho).rounded(.toNearestOrEven)), s.get().inFeatures)
            budget += r
        }
        // The rows that count: per batch, per packed row.
        func counted(_ batch: [TrainingSequence]) -> [Bool] {
            batch.flatMap { s in s.labels.map { !settings.useLabelMask || $0 != CrossEntropy.ignoreIndex } }
        }
        // Runs one batch with `recorded` layers read in `mode`; the recorders by layer. In collect mode each layer's
        // counted rows go to `fit` as soon as the layer has read the batch (one layer's rows held at a time).
        func pass(_ batch: [TrainingSequence], recording recorded: Set<String>, mode: InputRecorder.Mode,
                  fit: ((_ layer: String, _ rows: [Double], _ count: Int) throws -> Void)? = nil) throws -> [String: InputRecorder] {
            let keep = counted(batch)
            var recorders: [String: InputRecorder] = [:]
            var failure: (any Error)?
            for s in slots where recorded.contains(s.name) {
                let r = InputRecorder(s.get(), mode: mode, keep: keep); recorders[s.name] = r; s.set(r)
                if let fit {
                    let name = s.name
                    r.complete = { rows, n in
                        guard failure == nil else { return }
                        do { try fit(name, rows, n) } catch { failure = error }
                    }
                }
            }
            defer { for s in slots { if let r = recorders[s.name] { s.set(r.layer) } } }
            try forward(batch)
            if let failure { throw failure }
            for (name, r) in recorders where r.seen != keep.count {
                throw AdapterError.unsupported("init_lora_weights eva: \(name) saw \(r.seen) rows for \(keep.count) tokens")
            }
            return recorders
        }
        // Layers whose inputs are equal on the first batch (the same hash, as PEFT tells them) share the first one's analysis.
        var leaderOf: [String: String] = [:]
        let first = try pass(batches[0], recording: Set(names), mode: .hash)
        for (i, n) in names.enumerated() {
            if let l = names[..<i].first(where: { leaderOf[$0] == nil && first[$0]!.hash.value == first[n]!.hash.value }) { leaderOf[n] = l }
        }
        let leaders = names.filter { leaderOf[$0] == nil }
        for n in names { if let l = leaderOf[n] { maxComponents[l] = max(maxComponents[l]!, maxComponents[n]!) } }
        for n in names { if let l = leaderOf[n] { maxComponents[n] = maxComponents[l] } }
        let inFeatures = Dictionary(uniqueKeysWithValues: slots.map { ($0.name, $0.get().inFeatures) })
        var pca = Dictionary(uniqueKeysWithValues: leaders.map { ($0, IncrementalPCA(components: maxComponents[$0]!, features: inFeatures[$0]!)) })
        var converged = Dictionary(uniqueKeysWithValues: leaders.map { ($0, [Bool](repeating: false, count: maxComponents[$0]!)) })
        var settled = Dictionary(uniqueKeysWithValues: leaders.map { ($0, false) })
        var ranks = maxComponents
        var passes = 1, index = 0
        // Layers in PEFT's order for the redistribution: the leaders, then the others.
        let order = leaders + names.filter { leaderOf[$0] != nil }
        while true {
            var active: [String] = []
            for l in leaders {
                let done = converged[l]!.prefix(ranks[l]!).allSatisfy { $0 }
                if !settled[l]! && done { settled[l] = true; continue }
                if settled[l]! && !done { settled[l] = false }
                if !settled[l]! { active.append(l) }
            }
            if settled.values.allSatisfy({ $0 }) { break }
            guard passes < maxPasses else {
                throw AdapterError.unsupported("init_lora_weights eva: the components of \(active.count) layer(s) did not settle within \(maxPasses) batches (eva_config.tau \(settings.tau)); lower tau or give more data")
            }
            let batch = batches[index % batches.count]
            index += 1; passes += 1
            _ = try pass(batch, recording: Set(active), mode: .collect) { l, x, n in
                if n < maxComponents[l]! { return }   // too few rows for the components (PEFT skips the batch)
                let before = pca[l]!.isFitted ? pca[l]! : nil
                try pca[l]!.partialFit(x, rows: n)
                guard let before else { return }
                let now = pca[l]!
                converged[l] = (0..<now.found).map { k in
                    let a = now.component(k), b = before.component(min(k, before.found - 1))
                    var dot = 0.0, na = 0.0, nb = 0.0
                    for (p, q) in zip(a, b) { dot += p * q; na += p * p; nb += q * q }
                    return dot / max((na * nb).squareRoot(), 1e-8) >= settings.tau
                }
            }
            guard leaders.allSatisfy({ pca[$0]!.isFitted }) else { continue }
            // The redistribution: the largest explained variance ratios over all layers.
            var entries: [(layer: String, ratio: Double)] = []
            for n in order {
                let p = pca[leaderOf[n] ?? n]!
                for v in p.explainedVarianceRatio.prefix(maxComponents[n]!) { entries.append((n, v)) }
            }
            let sorted = entries.enumerated().sorted { $0.element.ratio != $1.element.ratio ? $0.element.ratio > $1.element.ratio : $0.offset < $1.offset }
            var counts = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
            for e in sorted.prefix(budget) { counts[e.element.layer]! += 1 }
            for n in names {
                guard let l = leaderOf[n], counts[l]! < counts[n]! else { continue }
                (counts[l], counts[n]) = (counts[n]!, counts[l]!)
            }
            ranks = counts
        }
        var a: [String: [Float]] = [:]
        for n in names {
            let rank = ranks[n]!, p = pca[leaderOf[n] ?? n]!
            guard rank > 0 else { continue }
            guard rank <= p.found, converged[leaderOf[n] ?? n]!.prefix(rank).allSatisfy({ $0 }) else {
                throw AdapterError.unsupported("init_lora_weights eva: \(n) was given rank \(rank) but its components did not settle")
            }
            var rows: [Float] = []
            for k in 0..<rank {
                let scale = settings.whiten ? 1 / p.singularValues[k].squareRoot() : 1
                rows += p.component(k).map { Float($0 * scale) }
            }
            a[n] = rows
        }
        return EVAStart(ranks: ranks, a: a, passes: passes)
    }
}
