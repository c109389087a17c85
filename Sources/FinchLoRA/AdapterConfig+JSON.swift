import FinchFormats
import Foundation

extension AdapterConfig {
    /// Keys Finch reads and writes itself; everything else in a PEFT config is kept in `extra`.
    static let knownKeys: Set<String> = [
        "r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform", "bias", "use_rslora",
        "use_dora", "init_lora_weights", "rank_pattern", "alpha_pattern", "base_model_name_or_path",
        "task_type", "peft_type", "fan_in_fan_out", "inference_mode", "modules_to_save",
    ]

    /// Reads PEFT's `adapter_config.json`.
    public static func load(path: String) throws -> AdapterConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw AdapterError.notFound(path: path) }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw AdapterError.invalidConfig(path: path, reason: "not a JSON object")
        }
        return try AdapterConfig(json: obj, path: path)
    }

    init(json obj: [String: Any], path: String) throws {
        func fail(_ r: String) -> AdapterError { .invalidConfig(path: path, reason: r) }
        if let t = obj["peft_type"] as? String, t != "LORA" { throw fail("peft_type \(t) is not LORA") }
        if let m = obj["modules_to_save"], !(m is NSNull), (m as? [Any])?.isEmpty == false {
            throw fail("modules_to_save (fully trained extra modules) is not supported yet")
        }
        guard let r = (obj["r"] as? NSNumber)?.intValue else { throw fail("missing integer 'r'") }
        guard let alpha = (obj["lora_alpha"] as? NSNumber)?.doubleValue else { throw fail("missing number 'lora_alpha'") }
        let targets: Targets
        switch obj["target_modules"] {
        case let s as String: targets = s == "all-linear" ? .allLinear : .regex(s)
        case let list as [Any]:
            let names = list.compactMap { $0 as? String }
            guard names.count == list.count, !names.isEmpty else { throw fail("target_modules must be a list of names") }
            targets = names == ["all-linear"] ? .allLinear : .names(names)
        default: throw fail("missing target_modules")
        }
        self.init(r: r, loraAlpha: alpha, targetModules: targets)
        loraDropout = (obj["lora_dropout"] as? NSNumber)?.doubleValue ?? 0
        switch obj["layers_to_transform"] {
        case let n as NSNumber: layersToTransform = [n.intValue]
        case let l as [NSNumber]: layersToTransform = l.map(\.intValue)
        default: layersToTransform = nil
        }
        bias = obj["bias"] as? String ?? "none"
        fanInFanOut = obj["fan_in_fan_out"] as? Bool ?? false
        useRSLoRA = obj["use_rslora"] as? Bool ?? false
        useDoRA = obj["use_dora"] as? Bool ?? false
        switch obj["init_lora_weights"] {
        case let b as Bool: initLoRAWeights = b ? "true" : "false"
        case let s as String: initLoRAWeights = s
        default: initLoRAWeights = "true"
        }
        rankPattern = (obj["rank_pattern"] as? [String: NSNumber])?.mapValues(\.intValue) ?? [:]
        alphaPattern = (obj["alpha_pattern"] as? [String: NSNumber])?.mapValues(\.doubleValue) ?? [:]
        baseModelNameOrPath = obj["base_model_name_or_path"] as? String
        taskType = obj["task_type"] as? String ?? "CAUSAL_LM"
        for (k, v) in obj where !Self.knownKeys.contains(k) { extra[k] = JSONValueBox(v) }
        try validate(path: path)
    }

    /// The config as PEFT writes it.
    public func jsonObject() -> [String: Any] {
        var o: [String: Any] = [:]
        for (k, v) in extra { o[k] = v.value }
        o["peft_type"] = "LORA"
        o["task_type"] = taskType
        o["r"] = r
        o["lora_alpha"] = loraAlpha == loraAlpha.rounded() ? Int(loraAlpha) as Any : loraAlpha as Any
        o["lora_dropout"] = loraDropout
        switch targetModules {
        case .allLinear: o["target_modules"] = "all-linear"
        case .regex(let s): o["target_modules"] = s
        case .names(let n): o["target_modules"] = n
        }
        o["layers_to_transform"] = layersToTransform.map { $0 as Any } ?? NSNull()
        o["bias"] = bias
        o["use_rslora"] = useRSLoRA
        o["use_dora"] = useDoRA
        o["init_lora_weights"] = initLoRAWeights == "true" ? true as Any : (initLoRAWeights == "false" ? false as Any : initLoRAWeights as Any)
        o["rank_pattern"] = rankPattern
        o["alpha_pattern"] = alphaPattern
        o["base_model_name_or_path"] = baseModelNameOrPath.map { $0 as Any } ?? NSNull()
        o["fan_in_fan_out"] = fanInFanOut
        o["inference_mode"] = true
        o["modules_to_save"] = NSNull()
        return o
    }

    /// Writes `adapter_config.json` (pretty-printed, sorted keys, as PEFT does).
    public func write(to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(to: path) { try $0.write([UInt8](data)) }   // fsynced, renamed into place
    }
}
