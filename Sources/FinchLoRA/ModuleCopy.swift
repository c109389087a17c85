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
        let v = base.floatValues()
        self.init(rows: base.outFeatures, columns: base.inFeatures, values: Buffer(copying: v.pointer, count: v.count))
    }

    public func enableGradients() { if grad == nil { grad = Buffer(count: value.count) } }
    public func zeroGradients() { grad?.pointer.update(repeating: 0, count: value.count) }
}
