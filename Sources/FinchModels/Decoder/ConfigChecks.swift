import FinchFormats

/// Checks shared by the families' configs.
enum ConfigChecks {
    /// Throws when a size is not positive or absurdly large (names as the config spells them).
    static func sizes(_ sizes: [(String, Int)], path: String) throws {
        for (name, v) in sizes where v <= 0 || v > 1 << 24 {
            throw ModelError.invalidConfig(path: path, reason: "\(name) = \(v) is out of range")
        }
    }

    /// Grouped-query heads and a rotary head size.
    static func heads(_ heads: Int, kvHeads: Int, headDim: Int, path: String) throws {
        if heads % kvHeads != 0 {
            throw ModelError.invalidConfig(path: path, reason: "num_attention_heads (\(heads)) must be a multiple of num_key_value_heads (\(kvHeads))")
        }
        if headDim % 2 != 0 {
            throw ModelError.invalidConfig(path: path, reason: "head_dim (\(headDim)) must be even for rotary embeddings")
        }
    }

    /// `generation_config.json` as transformers writes it from a model config: the ids generation
    /// starts, stops and pads with (one end id as a number, several as a list).
    static func generationConfigJSON(bos: Int?, eos: [Int], pad: Int? = nil) -> JSONValue {
        func int(_ v: Int) -> JSONValue { .number(String(v)) }
        var m: [(key: String, value: JSONValue)] = [("_from_model_config", .bool(true))]
        if let b = bos { m.append(("bos_token_id", int(b))) }
        if !eos.isEmpty { m.append(("eos_token_id", eos.count == 1 ? int(eos[0]) : .array(eos.map(int)))) }
        if let p = pad { m.append(("pad_token_id", int(p))) }
        return .object(m)
    }
}

extension JSONValue {
    /// An object with `set` members replaced or added, `remove` members dropped, keys sorted.
    func patched(set: [(String, JSONValue)], remove: [String] = []) -> JSONValue {
        guard case .object(var m) = self else { return self }
        let drop = Set(remove + set.map(\.0))
        m.removeAll { drop.contains($0.key) }
        m += set.map { (key: $0.0, value: $0.1) }
        m.sort { $0.key < $1.key }
        return .object(m)
    }
}
