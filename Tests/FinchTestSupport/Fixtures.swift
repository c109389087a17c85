// The comparison every test uses lives in FinchCore (the CLI checks merges with it too).
@_exported import func FinchCore.maxAbsDiff
import Foundation
import XCTest
import FinchModels

/// Paths of committed fixtures and of the real models, for every test target. Everything a test
/// reads is under Tests/Fixtures (made by committed scripts) or is a model fetched by
/// Scripts/fetch-model.sh; nothing beside the repository is read.
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    public static func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    /// The repository's root folder.
    public static let repository = root.deletingLastPathComponent().deletingLastPathComponent()

    /// The real SmolLM2 GGUF; skips (or fails under CI) when it is absent.
    public static func smolLM2() throws -> String {
        try model("smollm2-135m")
    }

    /// The real Gemma 3 270M GGUF (Q4_K_M); skips (or fails under CI) when it is absent.
    public static func gemma3() throws -> String {
        try model("gemma3-270m")
    }

    /// A model known to ModelStore by short name, looked up where the CLI looks
    /// (`$FINCH_MODEL_DIR`, else `$FINCH_HOME/models`, else `$XDG_CACHE_HOME/finch/models`, else ~/.cache/finch/models).
    public static func model(_ name: String) throws -> String {
        guard let path = ModelStore.expectedPath(of: name) else { preconditionFailure("unknown model \(name)") }
        if FileManager.default.fileExists(atPath: path) { return path }
        throw missing("the model \(name) (\(path))", fix: "run Scripts/fetch-model.sh \(name)")
    }

    /// A committed fixture file; a missing one is always a failure (the repository is broken).
    public static func required(_ rel: String) throws -> String {
        let p = path(rel)
        guard FileManager.default.fileExists(atPath: p) else { throw MissingRequirement(what: "fixture \(p)", fix: "it is committed: restore it with git") }
        return p
    }

    /// The finch binary built by `swift build -c release --product finch` (Scripts/test.sh builds it first).
    public static func finchBinary() throws -> String { try releaseBinary("finch") }

    /// An executable of this package in .build/release (`finch`, the test-only `finch-fault-injection`),
    /// which `swift build -c release -Xswiftc -enable-testing --build-tests` builds (Scripts/test.sh does).
    public static func releaseBinary(_ name: String) throws -> String {
        let p = repository.appendingPathComponent(".build/release/" + name).path
        guard FileManager.default.isExecutableFile(atPath: p) else {
            throw missing("the \(name) binary (\(p))", fix: "run `swift build -c release -Xswiftc -enable-testing --build-tests` first (Scripts/test.sh does)")
        }
        return p
    }
}

/// Something a test needs that this machine lacks (a model, a tool, a privilege), named with how
/// to get it.
public struct MissingRequirement: Error, CustomStringConvertible {
    public let what: String
    public let fix: String
    public var description: String { "missing: \(what); \(fix)" }
}

/// Whether this is a CI run (`.ci/run` and Scripts/test.sh set `CI`): there nothing may be skipped.
public var isCI: Bool {
    let v = ProcessInfo.processInfo.environment["CI"] ?? ""
    return !v.isEmpty && v != "0" && v.lowercased() != "false"
}

/// The error to throw when `what` is missing: under CI a failure naming it and how to get it;
/// elsewhere an XCTSkip with the same words (printed by XCTest as the skip's reason).
public func missing(_ what: String, fix: String) -> Error {
    let m = MissingRequirement(what: what, fix: fix)
    if isCI { return m }
    print("SKIP (outside CI): \(m)")
    return XCTSkip(m.description)
}

/// ‖a − b‖ / ‖b‖ (in Double), the relative error by norm that gradient and adapter comparisons use.
public func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return (num / max(den, 1e-300)).squareRoot()
}

/// max |a − b| / max |b| (in Double), the relative error by the largest value that output and
/// factor comparisons use.
public func maxRelativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "\(a.count) values vs \(b.count)")
    let scale = b.map { abs(Double($0)) }.max() ?? 1
    return zip(a, b).map { abs(Double($0) - Double($1)) }.max()! / max(scale, 1e-30)
}

extension LoadedModel {
    /// The model as the decoder-only model a test of a decoder family loaded (its `forward`,
    /// `makeCache` and padded `logits`); stops the test run for another kind.
    public var causal: any CausalLM {
        guard let m = model as? any CausalLM else { preconditionFailure("\(path) is a \(model.kind.rawValue) model; the test expects a decoder-only one") }
        return m
    }
}

