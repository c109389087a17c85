import FinchCore

// Dimension letters: R rows (the vocabulary, for an embedding or an LM head), C columns.

/// A module trained in full beside an adapter (PEFT's `modules_to_save`, its
/// `ModulesToSaveWrapper`): a trainable f32 copy of the frozen weight [R, C] that the model uses
/// in place of the original while the adapter is active, saved in the adapter as
/// `base_model.model.<module>.weight`.
public final class ModuleCopy: @unchecked Sendable {
    /// The copy as a weight the model multiplies or looks rows up in (f32 storage: `value`).
    public let weight: LinearWeight
    /// [R, C], the trained values (the storage of `weight`).
    public let value: Buffer<Float>
    /// [R, C], allocated by `enableGradients()`.
    public private(set) var grad: Buffer<Float>?

    public var rows: Int { weight.outFeatures }
    public var columns: Int { weight.inFeatures }

    /// A copy of `values` [rows, columns].
    public init(rows: Int, columns: Int, values: Buffer<Float>) {
        precondition(values.count == rows * columns)
        value = values
        weight = LinearWeight(outFeatures: rows, inFeatures: columns, storage: .f32(values))
    }

    /// A fresh copy of a frozen weight's values (how PEFT starts one).
    public convenience init(copying base: LinearWeight) {
        let v = base.floatValues()   // already a fresh buffer unless the weight is stored in f32
        let fresh: Buffer<Float> = if case .f32 = base.storage { Buffer(copying: v.pointer, count: v.count) } else { v }
        self.init(rows: base.outFeatures, columns: base.inFeatures, values: fresh)
    }

    public func enableGradients() { if grad == nil { grad = Buffer(count: value.count) } }
    public func zeroGradients() { grad?.pointer.update(repeating: 0, count: value.count) }
}

/// PEFT's trainable tokens (`trainable_token_indices`, its `TrainableTokensLayer`): new values for
/// some rows of the embedding (and of an LM head tied to it), trained while the rest stays frozen.
/// `value` holds the rows' values, not differences (as PEFT's `trainable_tokens_delta` does: it
/// starts as the original rows), saved as `base_model.model.<embedding>.token_adapter.trainable_tokens_delta`.
/// Attached to a model (`attach(to:)`), the model computes with `merged`, the embedding with these
/// rows in place (`apply()` after every change), and trains through its gradient, gathered into
/// `grad` (`gatherGradient()`).
public final class TokenRows: @unchecked Sendable {
    /// The embedding module (`model.embed_tokens`).
    public let module: String
    /// The rows (token ids), distinct.
    public let indices: [Int]
    /// [n, C] the rows' values.
    public let value: Buffer<Float>
    public let columns: Int
    /// [n, C], allocated by `enableGradients()`.
    public private(set) var grad: Buffer<Float>?
    /// [V, C] the embedding with the rows in place (its gradient buffer collects a pass's gradient);
    /// made by `attach(to:)`.
    public private(set) var merged: ModuleCopy?

    public static let savedSuffix = ".token_adapter.trainable_tokens_delta"

    /// `values` [n, C] for rows `indices` of a [vocabulary, C] embedding.
    /// - Throws: ``AdapterError/unsupported(_:)`` for an index outside the vocabulary or a repeated one.
    public init(module: String, indices: [Int], values: Buffer<Float>, vocabulary: Int, columns: Int) throws {
        if let bad = indices.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw AdapterError.unsupported("trainable_token_indices holds \(bad), outside the vocabulary of \(vocabulary) tokens")
        }
        guard Set(indices).count == indices.count else { throw AdapterError.unsupported("trainable_token_indices repeats a token id") }
        precondition(values.count == indices.count * columns)
        self.module = module; self.indices = indices; self.value = values; self.columns = columns
    }

    /// PEFT's start: the base's own rows.
    public convenience init(module: String, indices: [Int], base: LinearWeight) throws {
        let c = base.inFeatures
        try self.init(module: module, indices: indices, values: Buffer(count: indices.count * c), vocabulary: base.outFeatures, columns: c)
        let all = base.floatValues()
        for (k, t) in indices.enumerated() { (value.pointer + k * c).update(from: all.pointer + t * c, count: c) }
    }

    /// Makes `merged` from the frozen embedding `base` [V, C] with the rows in place.
    public func attach(to base: LinearWeight) {
        precondition(base.inFeatures == columns)
        merged = ModuleCopy(copying: base)
        apply()
    }

    /// Writes the rows' values into `merged`.
    public func apply() {
        guard let m = merged else { return }
        for (k, t) in indices.enumerated() { (m.value.pointer + t * columns).update(from: value.pointer + k * columns, count: columns) }
    }

    public func enableGradients() {
        if grad == nil { grad = Buffer(count: value.count) }
        merged?.enableGradients()
    }

    public func zeroGradients() { grad?.pointer.update(repeating: 0, count: value.count); merged?.zeroGradients() }

    /// Adds the rows of `merged`'s gradient to `grad` and clears `merged`'s (one pass's worth).
    public func gatherGradient() {
        guard let g = grad, let full = merged?.grad else { return }
        for (k, t) in indices.enumerated() {
            let d = g.pointer + k * columns, s = full.pointer + t * columns
            for e in 0..<columns { d[e] += s[e] }
        }
        full.pointer.update(repeating: 0, count: full.count)
    }
}
