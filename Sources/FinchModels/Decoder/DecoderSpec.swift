import FinchCore

/// What a decoder-only transformer is made of: its sizes and the choices in which the families
/// differ (norms, activation, biases, q/k norms, sliding windows, positions). A family turns its
/// `config.json` (or GGUF metadata) into a spec and a name table (`DecoderNames`); one
/// implementation (`DecoderModel`) then serves inference and training for all of them, so a
/// family costs a config, a name table and a registry line, not a copy of the block and its backward.
public struct DecoderSpec: Sendable, Equatable {
    /// The registry name of the family (`llama`, `qwen2`, …).
    public var family: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var maxPositions: Int
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var tieWordEmbeddings: Bool

    /// The normalization of every norm in the model.
    public var norm: Norm
    /// The MLP's activation.
    public var mlp: MLP
    /// q, k, v projections carry biases (Qwen2).
    public var qkvBias: Bool = false
    /// The output projection carries a bias.
    public var outputBias: Bool = false
    /// The MLP's projections carry biases.
    public var mlpBias: Bool = false
    /// RMSNorm over each head of q and k before the rotation (Qwen3, Gemma 3).
    public var qkNorm: Bool = false
    /// With `qkNorm`: one RMSNorm over the whole q projection [H·D] and one over k [G·D] instead of
    /// one per head (OLMoE).
    public var qkNormOverProjection: Bool = false
    /// Norms on the outputs of attention and of the MLP before they join the residual (Gemma 3).
    public var sandwichNorms: Bool = false
    /// Added to every norm weight as the norm applies it (Gemma: the checkpoint holds w, the norm multiplies by 1 + w).
    public var normWeightOffset: Float = 0
    /// Multiplies the embedded tokens (Gemma: √hidden, as the weights' dtype rounds it).
    public var embeddingScale: Float? = nil
    /// Rotary embedding of each layer; empty when positions are learned (`learnedPositions`).
    public var ropes: [RoPE]
    /// A learned position embedding [maxPositions, C] is added to the token embeddings (GPT-2).
    public var learnedPositions: Bool = false
    /// q, k and v come from one product (GPT-2's `c_attn`), split in that order.
    public var fusedQKV: Bool = false
    /// Keys each layer's queries see: nil = all earlier positions; w = the last w positions
    /// (the query's own included), as transformers' sliding-window mask.
    public var slidingWindows: [Int?]
    /// Scale of the attention scores (1/√D unless the family says otherwise).
    public var attentionScale: Float
    /// A sparse mixture of experts in place of the MLP of the blocks it names (Mixtral, Qwen-MoE, OLMoE);
    /// nil: a dense MLP in every block.
    public var moe: MixtureOfExperts? = nil

    /// A mixture-of-experts MLP (`SparseMoE`): `experts` SwiGLU experts of `expertSize` each, `topK` of
    /// them per token, their weights renormalized when `normalize`; a shared expert of `sharedExpertSize`
    /// with a sigmoid gate (Qwen2-MoE); `denseLayers` keep a dense MLP of `intermediateSize`
    /// (Qwen-MoE's `mlp_only_layers` and `decoder_sparse_step`). `auxLossCoef`: the load-balancing loss is
    /// added in training with this weight (transformers' `output_router_logits`, `router_aux_loss_coef`).
    public struct MixtureOfExperts: Sendable, Equatable {
        public var experts: Int
        public var topK: Int
        public var normalize: Bool
        public var expertSize: Int
        public var sharedExpertSize: Int? = nil
        public var denseLayers: Set<Int> = []
        public var auxLossCoef: Float? = nil
        public init(experts: Int, topK: Int, normalize: Bool, expertSize: Int) {
            self.experts = experts; self.topK = topK; self.normalize = normalize; self.expertSize = expertSize
        }
    }

    /// The block's mixture of experts, or nil where it has a dense MLP.
    public func moe(layer i: Int) -> MixtureOfExperts? {
        guard let m = moe, !m.denseLayers.contains(i) else { return nil }
        return m
    }

    public enum Norm: Sendable, Equatable {
        /// `x / √(mean(x²) + eps) · w`.
        case rms(eps: Float)
        /// `(x − mean) / √(var + eps) · w + b` (GPT-2).
        case layer(eps: Float)
    }

    public enum MLP: Sendable, Equatable {
        /// `down(silu(gate(x)) · up(x))`.
        case swiGLU
        /// `down(gelu_tanh(gate(x)) · up(x))` (Gemma).
        case geGLU
        /// `down(gelu(up(x)))`, not gated (GPT-2's `c_fc`, `c_proj`), tanh-approximated or exact.
        case gelu(GELU.Approximation)

        var isGated: Bool {
            if case .gelu = self { return false }
            return true
        }
    }

    public init(family: String, hiddenSize: Int, intermediateSize: Int, numLayers: Int, numHeads: Int,
                numKVHeads: Int, headDim: Int, vocabSize: Int, maxPositions: Int, bosTokenId: Int?,
                eosTokenIds: [Int], tieWordEmbeddings: Bool, norm: Norm, mlp: MLP, rope: RoPE,
                slidingWindows: [Int?]? = nil, attentionScale: Float? = nil) {
        self.family = family; self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.numLayers = numLayers; self.numHeads = numHeads; self.numKVHeads = numKVHeads; self.headDim = headDim
        self.vocabSize = vocabSize; self.maxPositions = maxPositions; self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds; self.tieWordEmbeddings = tieWordEmbeddings
        self.norm = norm; self.mlp = mlp
        ropes = Array(repeating: rope, count: numLayers)
        self.slidingWindows = slidingWindows ?? Array(repeating: nil, count: numLayers)
        self.attentionScale = attentionScale ?? 1 / Float(headDim).squareRoot()
    }

    /// H·D: width of q and of the attention output.
    public var queryWidth: Int { numHeads * headDim }
    /// G·D: width of k and v.
    public var kvWidth: Int { numKVHeads * headDim }

    /// The linear layers of block `i` outside its experts, in checkpoint order.
    public func linears(layer i: Int) -> [DecoderLinear] {
        (fusedQKV ? [.qkv, .o] : [.q, .k, .v, .o]) + (moe(layer: i) != nil ? [] : mlp.isGated ? [.gate, .up, .down] : [.up, .down])
    }

    /// The norms of one block.
    public var norms: [DecoderNorm] {
        var n: [DecoderNorm] = [.attention]
        if qkNorm { n += [.q, .k] }
        if sandwichNorms { n.append(.postAttention) }
        n.append(.mlp)
        if sandwichNorms { n.append(.postMLP) }
        return n
    }

    /// (out, in) features of a block linear.
    public func shape(of l: DecoderLinear) -> (out: Int, in: Int) {
        switch l {
        case .q: (queryWidth, hiddenSize)
        case .qkv: (queryWidth + 2 * kvWidth, hiddenSize)
        case .k, .v: (kvWidth, hiddenSize)
        case .o: (hiddenSize, queryWidth)
        case .gate, .up: (intermediateSize, hiddenSize)
        case .down: (hiddenSize, intermediateSize)
        }
    }

    /// Whether a block linear carries a bias.
    public func hasBias(_ l: DecoderLinear) -> Bool {
        switch l {
        case .q, .k, .v, .qkv: qkvBias
        case .o: outputBias
        case .gate, .up, .down: mlpBias
        }
    }

    /// Channels of a norm's weight.
    public func channels(of n: DecoderNorm) -> Int {
        switch n {
        case .attention, .mlp, .postAttention, .postMLP: hiddenSize
        case .q: qkNormOverProjection ? queryWidth : headDim
        case .k: qkNormOverProjection ? kvWidth : headDim
        }
    }

    /// `eps` of the norms.
    var normEps: Float {
        switch norm { case .rms(let eps), .layer(let eps): eps }
    }

    /// Floats of per-row statistics a norm saves for backward (rstd; mean and rstd for LayerNorm).
    var normStats: Int {
        switch norm { case .rms: 1; case .layer: 2 }
    }
}

/// A linear layer of a decoder block, by role.
public enum DecoderLinear: String, Sendable, CaseIterable {
    case q, k, v, qkv, o, gate, up, down
}

/// A norm of a decoder block, by role: before attention, before the MLP, over each head of q / k,
/// and (sandwich norms) on the outputs of attention and of the MLP.
public enum DecoderNorm: String, Sendable, CaseIterable {
    case attention, mlp, q, k, postAttention, postMLP
}
