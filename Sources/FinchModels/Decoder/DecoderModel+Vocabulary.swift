import FinchCore
import FinchLoRA
import Foundation

// Dimension letters: V vocabulary (before growing), K tokens added, C hidden size.

extension DecoderModel {
    /// Grows the embedding and the LM head to `size` rows, as transformers' `resize_token_embeddings`
    /// does: the old rows kept, new ones from `rows` (module name → [K, C]) where given, else
    /// `MeanResizing`'s (the embedding's and an untied head's each from their own rows; `seed` nil:
    /// their mean, no draw); a tied head stays tied. The grown weights are stored in the old ones'
    /// type (a quantized one's compute type); `config` and `spec` take the new size.
    /// - Throws: ``ModelError/adapterProblem(_:)`` when an adapter with trained copies or rows is
    ///   loaded (they are the old size), or `size` is not larger.
    public func growVocabulary(to size: Int, rows: [String: Buffer<Float>], seed: UInt64?) throws {
        let v = spec.vocabSize, c = spec.hiddenSize
        guard size > v else { throw ModelError.adapterProblem("the vocabulary has \(v) tokens; it can only grow (asked for \(size))") }
        if let (name, _) = adapterConfigs.first(where: { moduleCopies[$0.key] != nil || tokenRows[$0.key] != nil }) {
            throw ModelError.adapterProblem("adapter '\(name)' trains the embedding or the LM head at \(v) tokens; the vocabulary cannot grow under it (load the adapter that adds tokens first)")
        }
        var random: SeededRandom? = seed.map { SeededRandom(seed: $0) }
        func grown(_ w: LinearWeight, _ module: String) throws -> LinearWeight {
            let added: Buffer<Float>
            if let given = rows[module] {
                precondition(given.count == (size - v) * c)
                added = given
            } else {
                added = try MeanResizing.rows(for: w, adding: size - v, random: &random)
            }
            return grownWeight(w, added: added, dtype: w.dtype)
        }
        let tied = baseHead === baseEmbedding, int8Head = baseHead.int8 != nil
        let e = try grown(baseEmbedding, names.embedding)
        let h = tied ? e : try grown(baseHead, names.head)
        if int8Head { h.useInt8Products() }
        baseEmbedding = e; baseHead = h
        useModuleCopies([:])
        if vocabularyBeforeGrowth == nil { vocabularyBeforeGrowth = v }
        spec.vocabSize = size
        config.vocabSize = size
        work = nil; trainingWork = nil
    }
}
