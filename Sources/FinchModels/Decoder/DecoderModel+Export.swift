import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import FinchTokenizer
import Foundation

// Dimension letters: O out features, I in features, R rank.

extension DecoderModel {
    /// Writes the model as a Hugging Face directory of its family (`LlamaForCausalLM`, …) that transformers (and
    /// `LoadedModel.load`) can load: `config.json`, `generation_config.json`, the weights as
    /// `model.safetensors` (or `model-0000k-of-0000n.safetensors` shards plus
    /// `model.safetensors.index.json` when they exceed `maxShardBytes`), and, with a tokenizer,
    /// `tokenizer.json` + `tokenizer_config.json` (which carries the chat template).
    ///
    /// The weights written are what `forward` computes with: an adapter merged with
    /// `mergeActiveAdapter()` is already in the base weights; an **active, unmerged** adapter is
    /// folded into a copy of each weight as it is written (`W + scaling·B·A`, DoRA rescaled), so
    /// the model itself is left unchanged; a disabled adapter (`setActiveAdapter(nil)`) is left out.
    /// `q_proj` / `k_proj` are kept in Hugging Face row order (GGUF loading already un-permutes them).
    ///
    /// Linears held in 4 bits (QLoRA, `finch quantize`) are written in bitsandbytes' serialized
    /// layout (see `FourBitTensor.safeTensorsEntries`) with a `quantization_config` in
    /// `config.json`, as transformers saves a `load_in_4bit` model, unless `dequantize` is true
    /// (then they are written as `dtype` values). An active adapter that is not merged cannot be
    /// folded into 4-bit weights without requantizing: merge it first (`mergeActiveAdapter()`,
    /// which reports the rounding) or export dequantized.
    /// `lm_head.weight` is written only when the head is not tied to the embedding.
    ///
    /// The directory appears atomically: everything is written into a temporary sibling directory,
    /// flushed, then renamed into place. An existing non-empty `directory` is an error unless
    /// `overwrite` is true (then it is replaced; an empty one is always replaced).
    ///
    /// - Throws: ``ExportError``, and ``FinchFormats/FormatError`` / ``FinchTokenizer/TokenizerError``
    ///   from the writers.
    public func saveHuggingFace(to directory: String, tokenizer: Tokenizer?, options: HuggingFaceExportOptions) throws
        -> HuggingFaceExport {
        for (described, used) in zip(config.decoderSpec.ropes, spec.ropes) {
            guard described.invFreq.count == used.invFreq.count,
                  zip(described.invFreq, used.invFreq).allSatisfy({ abs($0 - $1) <= 1e-6 * max(abs($0), abs($1)) }) else {
                throw ExportError.unsupported(path: directory, reason: "the rotary frequencies come from a rope_freqs tensor "
                    + "(llama.cpp) that config.json cannot describe; export from the Hugging Face checkpoint instead")
            }
        }
        let plan = try exportPlan(keepQuantized: !options.dequantize, path: directory)
        var configJSON = config.huggingFaceConfigJSON(torchDType: options.dtype.torchName, tieWordEmbeddings: lmHead === embedding)
        if let q = plan.lazy.compactMap(\.quantized).first {
            var qc = q.tensor.storedConfig
            qc.computeDType = q.compute
            configJSON = configJSON.patched(set: [("quantization_config", qc.huggingFaceJSON)])
        }

        return try HuggingFaceWriter.writeDirectory(directory, plan: plan, config: configJSON,
                                                    generationConfig: config.generationConfigJSON(), tokenizer: tokenizer,
                                                    options: options, adapters: exportedAdapters)
    }

    /// Hugging Face names and shapes of the weights an export writes, in checkpoint order (as
    /// unquantized tensors; a 4-bit layer's weight is written as its bitsandbytes parts).
    public var huggingFaceTensorShapes: [(name: String, shape: [Int])] {
        ((try? exportPlan(keepQuantized: false, path: "")) ?? []).map { ($0.name, $0.shape) }
    }

    /// `linearsAsStored`: Conv1D families' linears [in, out] as their checkpoints store them;
    /// false gives every linear [out, in] (GGUF).
    func exportPlan(keepQuantized: Bool, path: String, linearsAsStored: Bool = true) throws -> [ExportTensor] {
        let c = spec.hiddenSize
        var plan = [ExportTensor(name: "\(names.embedding).weight", shape: [embedding.outFeatures, embedding.inFeatures],
                                 values: { [embedding] in embedding.floatValues() })]
        if let pe = positionEmbedding, let p = names.positions {
            plan.append(ExportTensor(name: "\(p).weight", shape: [pe.outFeatures, pe.inFeatures], values: { pe.floatValues() }))
        }
        for (i, layer) in layers.enumerated() {
            // Norms and linears in the order transformers writes a block: attention norm, q/k norms,
            // projections (weight, bias), MLP norm.
            func norm(_ n: DecoderNorm) {
                let w = layer.storedNorms[n]!
                plan.append(ExportTensor(name: "\(names.module(n, layer: i)).weight", shape: [w.count], values: { w }))
                if let b = layer.normBiases[n] {
                    plan.append(ExportTensor(name: "\(names.module(n, layer: i)).bias", shape: [b.count], values: { b }))
                }
            }
            for n in spec.norms where n != .mlp { norm(n) }
            for lin in spec.linears(layer: i) {
                let l = layer[lin]
                let module = names.module(lin, layer: i)
                // Conv1D weights are written back [in, out].
                var t = names.linearsTransposed && linearsAsStored
                    ? ExportTensor(name: module + ".weight", shape: [l.inFeatures, l.outFeatures],
                                   values: { transposed(effectiveWeight(l), rows: l.outFeatures, columns: l.inFeatures) })
                    : ExportTensor(name: module + ".weight", shape: [l.outFeatures, l.inFeatures],
                                   values: { effectiveWeight(l) })
                if keepQuantized, case .quantized(let q, let compute) = baseWeight(l).storage, let four = q as? any StoredQuantizedMatrix {
                    if names.linearsTransposed {
                        throw ExportError.unsupported(path: path, reason: "quantized Conv1D layers (\(spec.family)) cannot be written in "
                            + "bitsandbytes' layout yet; export dequantized (finch merge without --keep-4bit)")
                    }
                    if let w = l as? LoRALinear, let a = w.active, w.adapters[a] != nil, w.merged?.name != a {
                        throw ExportError.unsupported(path: path, reason: "adapter '\(a)' is active but not merged into the quantized "
                            + "weights of \(t.name): merge it first (it is requantized and the rounding reported) or export dequantized")
                    }
                    t.quantized = (four, compute)
                }
                plan.append(t)
                if let b = layer.biases[lin] {
                    plan.append(ExportTensor(name: module + ".bias", shape: [b.count], values: { b }))
                }
            }
            if let moe = layer.moe {
                // The router's, each expert's and the shared expert's linears, in the per-expert layout transformers writes.
                for slot in Self.expertSlots(moe, layer: i, names: names) {
                    let l = slot.get()
                    var t = ExportTensor(name: slot.name + ".weight", shape: [l.outFeatures, l.inFeatures], values: { effectiveWeight(l) })
                    if keepQuantized, case .quantized(let q, let compute) = baseWeight(l).storage, let four = q as? any StoredQuantizedMatrix {
                        if let w = l as? LoRALinear, let a = w.active, w.adapters[a] != nil, w.merged?.name != a {
                            throw ExportError.unsupported(path: path, reason: "adapter '\(a)' is active but not merged into the quantized "
                                + "weights of \(t.name): merge it first (it is requantized and the rounding reported) or export dequantized")
                        }
                        t.quantized = (four, compute)
                    }
                    plan.append(t)
                }
            }
            norm(.mlp)
        }
        plan.append(ExportTensor(name: "\(names.finalNorm).weight", shape: [c], values: { [finalNormStored] in finalNormStored }))
        if let b = finalNormBias {
            plan.append(ExportTensor(name: "\(names.finalNorm).bias", shape: [c], values: { b }))
        }
        if lmHead !== embedding {
            plan.append(ExportTensor(name: "\(names.head).weight", shape: [lmHead.outFeatures, lmHead.inFeatures],
                                     values: { [lmHead] in lmHead.floatValues() }))
        }
        return plan
    }

}
