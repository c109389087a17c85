import FinchCore
import FinchTokenizer

// Dimension letters: R selected rows, V vocabulary.

/// An encoder-decoder language model (T5): the source runs through the encoder once, then the
/// decoder generates with its own cache and cross-attention to the encoder's output. Shares
/// `TrainableModel` (training pairs carry the source in `TrainingSequence.source`).
public protocol Seq2SeqLM: TrainableModel {
    /// Ids that end generation.
    var eosTokenIds: [Int] { get }
    /// The id the decoder starts from (`decoder_start_token_id`).
    var decoderStartTokenId: Int { get }
    /// Runs the encoder over each source and returns one cache per source.
    func encode(_ sources: [[Int]], capacity: Int) throws -> [EncoderDecoderCache]
    /// Runs new decoder tokens of each sequence after what its cache holds; the selected logits [R, V].
    func decode(_ inputs: [(tokens: [Int], cache: EncoderDecoderCache)], logits: LogitsSelection) throws -> Logits
    /// Writes the model (an active adapter folded in) as a Hugging Face directory transformers loads.
    func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, options: HuggingFaceExportOptions) throws
        -> HuggingFaceExport
}

extension Seq2SeqLM {
    /// Generates up to `maxTokens` tokens for each source, choosing each next token with
    /// `sampler` (greedy when nil); stops a sequence at an EOS id when `stopAtEOS`.
    public func generate(sources: [[Int]], maxTokens: Int, sampler: ((UnsafeBufferPointer<Float>, Int) -> Int)? = nil,
                         stopAtEOS: Bool = true) throws -> [[Int]] {
        let caches = try encode(sources, capacity: maxTokens + 1)
        var out = sources.map { _ in [Int]() }
        var live = Array(sources.indices)
        var next = sources.map { _ in decoderStartTokenId }
        for _ in 0..<maxTokens where !live.isEmpty {
            let l = try decode(live.map { ([next[$0]], caches[$0]) }, logits: .last)
            var still: [Int] = []
            for (j, s) in live.enumerated() {
                let row = l.row(j)
                let t: Int
                if let sampler { t = sampler(row, s) } else {
                    var best = 0
                    for i in 1..<row.count where row[i] > row[best] { best = i }
                    t = best
                }
                out[s].append(t); next[s] = t
                if !(stopAtEOS && eosTokenIds.contains(t)) { still.append(s) }
            }
            live = still
        }
        return out
    }
}
