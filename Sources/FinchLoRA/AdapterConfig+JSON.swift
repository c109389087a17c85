import FinchFormats
import Foundation

extension AdapterConfig {
    /// Keys Finch reads and writes itself; everything else in a PEFT config is kept in `extra`.
    static let knownKeys: Set<String> = [
        "r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform", "bias", "use_rslora",
        "use_dora", "init_lora_weights", "rank_pattern", "alpha_pattern", "base_model_name_or_path",
        "task_type", "peft_type", "fan_in_fan_out", "inference_mode", "modules_to_save", "trainable_token_indices",
    ]

    /// Reads PEFT's `adapter_config.json`.
    public static func load(path: String) throws -> AdapterConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw AdapterError.notFound(path: path) }
        let value: JSONValue
        do { value = try JSONParser.parse([UInt8](data)) } catch {
            throw AdapterError.invalidConfig(path: path, reason: "not valid JSON (\(error))")
        }
        return try AdapterConfig(json: value, path: path)
    }

    init(json value: JSONValue, path: String) throws {
        func fail(_ r: String) -> AdapterError { .invalidConfig(path: path, reason: r) }
        guard let members = value.objectValue else { throw fail("not a JSON object") }
        let obj = value
        /// A key that must be absent, null, or of the kind asked for.
        func field<T>(_ key: String, _ kind: String, _ read: (JSONValue) -> T?) throws -> T? {
            guard let v = obj[key], !v.isNull else { return nil }
            guard let t = read(v) else { throw fail("'\(key)' must be \(kind), not \(v.kindName)") }
            return t
        }
        if let t = try field("peft_type", "a string", \.stringValue), t != "LORA" { throw fail("peft_type \(t) is not LORA") }
        if let ensure = obj["ensure_weight_tying"]?.boolValue, ensure {
            throw fail("ensure_weight_tying is not supported yet (Finch keeps tied embeddings' copies apart, as PEFT does without it)")
        }
        guard let r = obj["r"]?.wholeNumberValue else { throw fail("missing integer 'r'") }
        guard let alpha = obj["lora_alpha"]?.doubleValue else { throw fail("missing number 'lora_alpha'") }
        let targets: Targets
        switch obj["target_modules"] {
        case .string(let s)?: targets = s == "all-linear" ? .allLinear : .regex(s)
        case .array(let list)?:
            let names = list.compactMap(\.stringValue)
            guard names.count == list.count, !names.isEmpty else { throw fail("target_modules must be a list of names") }
            targets = names == ["all-linear"] ? .allLinear : .names(names)
        default: throw fail("missing target_modules")
        }
        self.init(r: r, loraAlpha: alpha, targetModules: targets)
        loraDropout = try field("lora_dropout", "a number", \.doubleValue) ?? 0
        switch obj["layers_to_transform"] {
        case nil, .null?: layersToTransform = nil
        case .number?: layersToTransform = [try field("layers_to_transform", "an integer", \.wholeNumberValue)!]
        case .array(let l)?:
            let layers = l.compactMap(\.wholeNumberValue)
            guard layers.count == l.count else { throw fail("layers_to_transform must be a list of layer indices") }
            layersToTransform = layers
        case let v?: throw fail("'layers_to_transform' must be an integer or a list, not \(v.kindName)")
        }
        bias = try field("bias", "a string", \.stringValue) ?? "none"
        fanInFanOut = try field("fan_in_fan_out", "true or false", \.boolValue) ?? false
        useRSLoRA = try field("use_rslora", "true or false", \.boolValue) ?? false
        useDoRA = try field("use_dora", "true or false", \.boolValue) ?? false
        switch obj["init_lora_weights"] {
        case .bool(let b)?: initLoRAWeights = b ? "true" : "false"
        case .string(let s)?: initLoRAWeights = s
        default: initLoRAWeights = "true"
        }
        func pattern<T>(_ key: String, _ kind: String, _ read: (JSONValue) -> T?) throws -> [String: T] {
            guard let entries = try field(key, "an object", \.objectValue) else { return [:] }
            var out: [String: T] = [:]
            for (k, v) in entries {
                guard let t = read(v) else { throw fail("\(key)[\(k)] must be \(kind), not \(v.kindName)") }
                out[k] = t
            }
            return out
        }
        switch obj["modules_to_save"] {
        case nil, .null?: modulesToSave = []
        case .array(let l)?:
            let names = l.compactMap(\.stringValue)
            guard names.count == l.count else { throw fail("modules_to_save must be a list of module names") }
            modulesToSave = names
        case let v?: throw fail("'modules_to_save' must be a list of module names, not \(v.kindName)")
        }
        func ids(_ v: JSONValue, _ key: String) throws -> [Int] {
            guard let l = v.arrayValue else { throw fail("\(key) must be a list of token ids, not \(v.kindName)") }
            let out = l.compactMap(\.wholeNumberValue)
            guard out.count == l.count else { throw fail("\(key) must be a list of token ids") }
            return out
        }
        switch obj["trainable_token_indices"] {
        case nil, .null?: break
        case .object(let entries)?:
            guard entries.count == 1 else {
                throw fail("trainable_token_indices names \(entries.count) modules; Finch trains the rows of one embedding")
            }
            trainableTokenModule = entries[0].key
            trainableTokenIndices = try ids(entries[0].value, "trainable_token_indices.\(entries[0].key)")
        case let v?: trainableTokenIndices = try ids(v, "trainable_token_indices")
        }
        rankPattern = try pattern("rank_pattern", "an integer", \.wholeNumberValue)
        alphaPattern = try pattern("alpha_pattern", "a number", \.doubleValue)
        baseModelNameOrPath = try field("base_model_name_or_path", "a string", \.stringValue)
        taskType = try field("task_type", "a string", \.stringValue) ?? "CAUSAL_LM"
        for (k, v) in members where !Self.knownKeys.contains(k) { extra[k] = v }
        // Kept in `extra` too (written back as read); read here for a LoftQ start.
        if let l = try field("loftq_config", "an object", \.objectValue), !l.isEmpty {
            func whole(_ key: String, _ fallback: Int) throws -> Int {
                guard let v = l.first(where: { $0.key == key })?.value, !v.isNull else { return fallback }
                guard let n = v.wholeNumberValue else { throw fail("loftq_config.\(key) must be an integer, not \(v.kindName)") }
                return n
            }
            loftq = LoftQSettings(bits: try whole("loftq_bits", 4), iterations: try whole("loftq_iter", 1))
        }
        if let e = try field("eva_config", "an object", \.objectValue), !e.isEmpty {
            func value<T>(_ key: String, _ kind: String, _ fallback: T, _ read: (JSONValue) -> T?) throws -> T {
                guard let v = e.first(where: { $0.key == key })?.value, !v.isNull else { return fallback }
                guard let t = read(v) else { throw fail("eva_config.\(key) must be \(kind), not \(v.kindName)") }
                return t
            }
            eva = EVASettings(rho: try value("rho", "a number", 2, \.doubleValue), tau: try value("tau", "a number", 0.99, \.doubleValue),
                              useLabelMask: try value("use_label_mask", "true or false", true, \.boolValue),
                              whiten: try value("whiten", "true or false", false, \.boolValue),
                              adjustScalingFactors: try value("adjust_scaling_factors", "true or false", true, \.boolValue))
        }
        try validate(path: path)
    }

    /// The config as PEFT writes it (keys sorted, as `json.dumps(sort_keys=True)`).
    public func json() -> JSONValue {
        var o: [String: JSONValue] = extra
        o["peft_type"] = .string("LORA")
        o["task_type"] = .string(taskType)
        o["r"] = .int(r)
        o["lora_alpha"] = loraAlpha == loraAlpha.rounded() && abs(loraAlpha) < 9e18 ? .int(Int(loraAlpha)) : .double(loraAlpha)
        o["lora_dropout"] = .double(loraDropout)
        switch targetModules {
        case .allLinear: o["target_modules"] = .string("all-linear")
        case .regex(let s): o["target_modules"] = .string(s)
        case .names(let n): o["target_modules"] = .array(n.map(JSONValue.string))
        }
        o["layers_to_transform"] = layersToTransform.map { .array($0.map(JSONValue.int)) } ?? .null
        o["bias"] = .string(bias)
        o["use_rslora"] = .bool(useRSLoRA)
        o["use_dora"] = .bool(useDoRA)
        switch initLoRAWeights {
        case "true": o["init_lora_weights"] = .bool(true)
        case "false": o["init_lora_weights"] = .bool(false)
        default: o["init_lora_weights"] = .string(initLoRAWeights)
        }
        o["rank_pattern"] = .sortedObject(rankPattern.mapValues(JSONValue.int))
        o["alpha_pattern"] = .sortedObject(alphaPattern.mapValues(JSONValue.double))
        o["base_model_name_or_path"] = baseModelNameOrPath.map(JSONValue.string) ?? .null
        o["fan_in_fan_out"] = .bool(fanInFanOut)
        o["inference_mode"] = .bool(true)
        o["modules_to_save"] = modulesToSave.isEmpty ? .null : .array(modulesToSave.map(JSONValue.string))
        if let t = trainableTokenIndices {
            let list = JSONValue.array(t.map(JSONValue.int))
            o["trainable_token_indices"] = trainableTokenModule.map { .sortedObject([$0: list]) } ?? list
        }
        if let e = eva {
            o["eva_config"] = .sortedObject(["rho": .double(e.rho), "tau": .double(e.tau), "use_label_mask": .bool(e.useLabelMask),
                                             "label_mask_value": .int(-100), "whiten": .bool(e.whiten),
                                             "adjust_scaling_factors": .bool(e.adjustScalingFactors)])
        }
        if let l = loftq { o["loftq_config"] = .sortedObject(["loftq_bits": .int(l.bits), "loftq_iter": .int(l.iterations)]) }
        return .sortedObject(o)
    }

    /// Writes `adapter_config.json` (indented by 2, keys sorted, as PEFT does).
    public func write(to path: String) throws {
        let text = json().serialized(indent: 2)
        try AtomicFile.write(to: path) { try $0.write(Array(text.utf8)) }   // fsynced, renamed into place
    }
}
