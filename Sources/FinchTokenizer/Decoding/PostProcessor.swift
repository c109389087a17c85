import FinchFormats

/// What `encode(addSpecialTokens: true)` adds around a single sequence (HF post-processors).
indirect enum PostProcessor: Sendable {
    enum Piece: Sendable, Equatable {
        /// A special token by its name in `specialTokens`.
        case special(String, typeId: Int)
        /// The input sequence ("A" or "B").
        case sequence(String, typeId: Int)
    }

    /// `TemplateProcessing`: `single` / `pair` templates; `specialTokens` maps a name to its ids.
    case template(single: [Piece], pair: [Piece], specialTokens: [(name: String, ids: [Int], tokens: [String])])
    /// `RobertaProcessing` / `BertProcessing`: `cls` A `sep`.
    case clsSep(kind: String, cls: (String, Int), sep: (String, Int), json: JSONValue)
    /// `ByteLevel` post-processing only trims offsets: ids are unchanged.
    case byteLevel(json: JSONValue)
    case sequence([PostProcessor])

    /// The ids of one sequence with the special tokens added.
    func process(_ ids: [Int32]) -> [Int32] {
        switch self {
        case let .template(single, _, specials):
            var out: [Int32] = []
            out.reserveCapacity(ids.count + 2)
            for piece in single {
                switch piece {
                case .sequence:
                    out.append(contentsOf: ids)
                case .special(let name, _):
                    if let s = specials.first(where: { $0.name == name }) {
                        out.append(contentsOf: s.ids.map { Int32($0) })
                    }
                }
            }
            return out
        case let .clsSep(_, cls, sep, _):
            return [Int32(cls.1)] + ids + [Int32(sep.1)]
        case .byteLevel:
            return ids
        case .sequence(let steps):
            return steps.reduce(ids) { $1.process($0) }
        }
    }

    /// A template that adds `bos` before and/or `eos` after the sequence (what transformers'
    /// `update_post_processor` builds from `add_bos_token` / `add_eos_token`).
    static func bosEos(bos: (String, Int)?, eos: (String, Int)?) -> PostProcessor {
        var single: [Piece] = []
        var pair: [Piece] = []
        var specials: [(name: String, ids: [Int], tokens: [String])] = []
        if let bos { single.append(.special(bos.0, typeId: 0)); specials.append((bos.0, [bos.1], [bos.0])) }
        single.append(.sequence("A", typeId: 0))
        if let eos {
            single.append(.special(eos.0, typeId: 0))
            if !specials.contains(where: { $0.name == eos.0 }) { specials.append((eos.0, [eos.1], [eos.0])) }
        }
        pair = single
        if let bos { pair.append(.special(bos.0, typeId: 1)) }
        pair.append(.sequence("B", typeId: 1))
        if let eos { pair.append(.special(eos.0, typeId: 1)) }
        return .template(single: single, pair: pair, specialTokens: specials)
    }
}
