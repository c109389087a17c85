import FinchCore
import FinchFormats
import FinchLoRA
import FinchQuant
import Foundation

/// A value a training setting can hold, read from a run file's (YAML or JSON) value and written
/// back as JSON. `settingKind` says what is expected, for the error that refuses another value.
public protocol SettingValue: Sendable, Equatable {
    /// The value, or nil when `json` is not of this type.
    init?(setting json: JSONValue)
    /// The value as JSON (`train_config.json`, checkpoints).
    var settingJSON: JSONValue { get }
    /// What a value must look like: "an integer", "one of f32, bf16".
    static var settingKind: String { get }
}

extension Int: SettingValue {
    public init?(setting json: JSONValue) {
        guard let v = json.wholeNumberValue else { return nil }
        self = v
    }
    public var settingJSON: JSONValue { .int(self) }
    public static var settingKind: String { "an integer" }
}

extension UInt64: SettingValue {
    /// A number, or digits as text (YAML reads an integer past Int64 as text).
    public init?(setting json: JSONValue) {
        switch json {
        case .number(let t), .string(let t):
            if let v = UInt64(t) { self = v } else if let w = JSONValue.number(t).wholeNumberValue, w >= 0 { self = UInt64(w) } else { return nil }
        default: return nil
        }
    }
    public var settingJSON: JSONValue { .number(String(self)) }
    public static var settingKind: String { "a non-negative integer" }
}

extension Double: SettingValue {
    /// A number, or text that reads as one (YAML 1.1 reads `2e-4`, without a dot, as text).
    public init?(setting json: JSONValue) {
        switch json {
        case .number(let t), .string(let t):
            guard let v = Double(t.trimmingCharacters(in: .whitespaces)) else { return nil }
            self = v
        default: return nil
        }
    }
    public var settingJSON: JSONValue { .double(self) }
    public static var settingKind: String { "a number" }
}

extension Float: SettingValue {
    public init?(setting json: JSONValue) {
        guard let d = Double(setting: json) else { return nil }
        self = Float(d)
    }
    public var settingJSON: JSONValue { .double(Double(self)) }
    public static var settingKind: String { "a number" }
}

extension Bool: SettingValue {
    public init?(setting json: JSONValue) {
        guard let b = json.boolValue else { return nil }
        self = b
    }
    public var settingJSON: JSONValue { .bool(self) }
    public static var settingKind: String { "true or false" }
}

extension String: SettingValue {
    public init?(setting json: JSONValue) {
        guard let s = json.stringValue else { return nil }
        self = s
    }
    public var settingJSON: JSONValue { .string(self) }
    public static var settingKind: String { "text" }
}

extension Array: SettingValue where Element: SettingValue {
    /// A list; also one comma-separated text (`q_proj, v_proj` or `3, 5, 7`, as the flag takes it).
    public init?(setting json: JSONValue) {
        var out: [Element] = []
        if let items = json.arrayValue {
            for item in items {
                guard let v = Element(setting: item) else { return nil }
                out.append(v)
            }
        } else if let s = json.stringValue {
            for part in s.split(separator: ",") {   // each part as text, else as a number (`3, 5, 7`)
                let t = part.trimmingCharacters(in: .whitespaces)
                guard let v = Element(setting: .string(t)) ?? Int(t).flatMap({ Element(setting: .int($0)) }) else { return nil }
                out.append(v)
            }
        } else {
            return nil
        }
        self = out
    }
    public var settingJSON: JSONValue { .array(map(\.settingJSON)) }
    public static var settingKind: String { "a list of \(Element.settingKind) values" }
}

extension Optional: SettingValue where Wrapped: SettingValue {
    /// null is "not set".
    public init?(setting json: JSONValue) {
        if json.isNull { self = nil; return }
        guard let v = Wrapped(setting: json) else { return nil }
        self = v
    }
    public var settingJSON: JSONValue { map(\.settingJSON) ?? .null }
    public static var settingKind: String { Wrapped.settingKind }
}

/// A setting with a fixed set of values: an enum whose raw values are its names. `init(settingName:)`
/// may accept other spellings (qlora's, Hugging Face's).
public protocol SettingChoice: SettingValue, RawRepresentable, CaseIterable where RawValue == String {
    init?(settingName: String)
}

extension SettingChoice {
    public init?(settingName: String) { self.init(rawValue: settingName) }
    public init?(setting json: JSONValue) {
        guard let s = json.stringValue, let v = Self(settingName: s) else { return nil }
        self = v
    }
    public var settingJSON: JSONValue { .string(rawValue) }
    public static var settingKind: String { "one of " + allCases.map(\.rawValue).joined(separator: ", ") }
}

extension WeightDType: SettingChoice {}
extension BackendKind: SettingChoice {}
extension QuantCompute: SettingChoice {}
extension QuantMethod: SettingChoice {}
extension DatasetFormat: SettingChoice {}
extension OptimizerKind: SettingChoice {
    public init?(settingName: String) { self.init(name: settingName) }
}
extension LRSchedule.Kind: SettingChoice {
    /// Also Hugging Face's `constant_with_warmup` (warmup is its own setting here).
    public init?(settingName: String) {
        if settingName == "constant_with_warmup" { self = .constant } else { self.init(rawValue: settingName) }
    }
}

/// PEFT's `init_lora_weights` for a new adapter: `true` (kaiming-uniform A, zero B), `gaussian`,
/// `olora` / `pissa` (A and B from the base weight's QR / SVD, the base keeping the residual), or
/// `pissa_niter_K` (PiSSA from K iterations of the randomized SVD), `loftq` (the base quantized
/// against an adapter fitted to the quantization error), or `eva` (A from the principal components of
/// each layer's inputs on the training data, ranks redistributed).
public struct LoRAInit: SettingValue, Hashable, CustomStringConvertible {
    public let rawValue: String
    public static let kaimingUniform = LoRAInit(checked: "true")
    public static let gaussian = LoRAInit(checked: "gaussian")
    public static let olora = LoRAInit(checked: "olora")
    public static let pissa = LoRAInit(checked: "pissa")
    public static func pissa(iterations: Int) -> LoRAInit { LoRAInit(checked: "pissa_niter_\(iterations)") }
    public static let loftq = LoRAInit(checked: "loftq")
    public static let eva = LoRAInit(checked: "eva")

    private init(checked: String) { rawValue = checked }

    public init?(rawValue: String) {
        let v = rawValue.lowercased()
        if ["true", "gaussian", "olora", "pissa", "loftq", "eva"].contains(v) {
            self.rawValue = v
        } else if v.hasPrefix("pissa_niter_"), let k = Int(v.dropFirst("pissa_niter_".count)), k >= 0 {
            self.rawValue = "pissa_niter_\(k)"
        } else {
            return nil
        }
    }

    /// Whether it moves part of the base weight into the adapter (OLoRA, PiSSA).
    public var isDecomposition: Bool { LoRAAdapter.isDecompositionInit(rawValue) }

    /// YAML's `init_lora_weights: true` is a boolean; as text it is the name.
    public init?(setting json: JSONValue) {
        if let b = json.boolValue {
            guard b else { return nil }
            self = .kaimingUniform
        } else if let s = json.stringValue, let v = LoRAInit(rawValue: s) {
            self = v
        } else {
            return nil
        }
    }
    public var settingJSON: JSONValue { .string(rawValue) }
    public static var settingKind: String { "one of true, gaussian, olora, pissa, pissa_niter_K (K iterations), loftq, eva" }
    public var description: String { rawValue }
}

/// One training setting, declared once: its key in run files and `train_config.json`, the other
/// spellings read as it (qlora's, Hugging Face's), its `finch train` flags, its help, and the check
/// of its value. Its type and default are the ``TrainingConfig`` property its key path names.
/// ``TrainingConfig/settings`` lists them all; the YAML reader, the JSON coding, ``TrainingConfig/validate()``
/// and the CLI's names, help and overlay (Sources/finch/Train.swift) are made from that list.
public struct TrainingSetting: @unchecked Sendable {
    /// The canonical key (`lora_r`).
    public let key: String
    /// Other keys a run file may use for it.
    public let aliases: [String]
    /// The long flag names of `finch train` (without `--`), the first being the one help shows.
    public let flags: [String]
    public let help: String
    /// The property (`\TrainingConfig.loraR`).
    public let keyPath: PartialKeyPath<TrainingConfig>
    /// What a value must look like (for errors).
    public let kind: String
    let read: (inout TrainingConfig, JSONValue) -> Bool
    let write: (TrainingConfig) -> JSONValue
    /// Why the value in a config cannot run, or nil.
    let problem: (TrainingConfig) -> String?

    /// A setting of type `T`; `check` returns why a value cannot run (nil: it can), and sees the
    /// whole config for the checks that depend on another setting.
    static func make<T: SettingValue>(_ key: String, _ keyPath: WritableKeyPath<TrainingConfig, T>, aliases: [String] = [],
                                      flags: [String]? = nil, help: String,
                                      check: @escaping (T, TrainingConfig) -> String? = { _, _ in nil }) -> TrainingSetting {
        TrainingSetting(key: key, aliases: aliases, flags: flags ?? [key.replacingOccurrences(of: "_", with: "-")], help: help,
                        keyPath: keyPath, kind: T.settingKind,
                        read: { c, json in
                            guard let v = T(setting: json) else { return false }
                            c[keyPath: keyPath] = v
                            return true
                        },
                        write: { $0[keyPath: keyPath].settingJSON },
                        problem: { check($0[keyPath: keyPath], $0) })
    }
}

/// One command-line value bound to its setting, for ``TrainingConfig/resolve(resumed:runFile:overrides:)``.
/// An absent option (nil) or an unset flag (false) changes nothing.
public struct SettingOverride: @unchecked Sendable {
    /// The setting it sets.
    public let keyPath: PartialKeyPath<TrainingConfig>
    let apply: (inout TrainingConfig) throws -> Void

    /// `--lora-r 16`: the typed value, when given.
    public static func value<T>(_ keyPath: WritableKeyPath<TrainingConfig, T>, _ value: T?) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in if let value { c[keyPath: keyPath] = value } }
    }

    /// An optional setting given a value.
    public static func value<T>(_ keyPath: WritableKeyPath<TrainingConfig, T?>, _ value: T?) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in if let value { c[keyPath: keyPath] = value } }
    }

    /// `--use-dora`: a flag that turns its setting on.
    public static func flag(_ keyPath: WritableKeyPath<TrainingConfig, Bool>, _ given: Bool) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in if given { c[keyPath: keyPath] = true } }
    }

    /// `--bf16`: a flag that sets another setting to `value`.
    public static func flag<T>(_ keyPath: WritableKeyPath<TrainingConfig, T>, _ given: Bool, means value: T) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in if given { c[keyPath: keyPath] = value } }
    }

    /// `--target-modules q_proj,v_proj`: text read as the setting reads a run file's text.
    public static func text<T: SettingValue>(_ keyPath: WritableKeyPath<TrainingConfig, T>, _ text: String?) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in
            guard let text else { return }
            guard let v = T(setting: .string(text)) else {
                let key = TrainingConfig.setting(keyPath)?.key ?? "\(keyPath)"
                throw SettingError.wrongType(key: key, place: SettingPlace(), expected: T.settingKind, got: .string(text))
            }
            c[keyPath: keyPath] = v
        }
    }

    /// Unsets an optional setting when `condition` holds.
    public static func clear<T>(_ keyPath: WritableKeyPath<TrainingConfig, T?>, when condition: Bool) -> SettingOverride {
        SettingOverride(keyPath: keyPath) { c in if condition { c[keyPath: keyPath] = nil } }
    }
}

extension TrainingConfig {
    /// A run's settings: the defaults, then the resumed run's settings (its `trainer_state.json`),
    /// then the run file, then the flags (a flag wins), validated.
    public static func resolve(resumed: TrainingConfig?, runFile: String?, overrides: [SettingOverride]) throws -> TrainingConfig {
        var c = resumed ?? TrainingConfig()
        if let runFile { c = try load(yamlAt: runFile, over: c) }
        for o in overrides { try o.apply(&c) }
        try c.validate()
        return c
    }
}
