import ArgumentParser
import FinchFormats
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model file's metadata and tensors (GGUF, safetensors, or an HF model directory).")

    @Argument(help: "A .gguf or .safetensors file, or a model directory.")
    var file: String

    @Option(name: .long, help: "Show at most this many tensors (0 = all).")
    var maxTensors: Int = 0

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDir) else {
            throw ValidationError("\(file): no such file or directory")
        }
        if isDir.boolValue {
            try inspectDirectory()
        } else if file.lowercased().hasSuffix(".safetensors") {
            try inspectSafeTensors(SafeTensorsFile(path: file))
        } else {
            try inspectGGUF(GGUFFile(path: file))
        }
    }

    func limit<T>(_ xs: [T]) -> ArraySlice<T> { maxTensors > 0 ? xs.prefix(maxTensors) : xs[...] }

    func inspectGGUF(_ g: GGUFFile) throws {
        print("GGUF v\(g.version): \(g.path)")
        print("metadata (\(g.metadataKeys.count) keys):")
        for k in g.metadataKeys {
            guard let v = g.metadata[k] else { continue }
            print("  \(k) = \(describe(v))")
        }
        var total = 0
        var byType: [String: Int] = [:]
        for t in g.tensors { total += t.byteCount; byType["\(t.type)", default: 0] += 1 }
        print("tensors (\(g.tensors.count), \(formatBytes(total))): " + byType.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        for t in limit(g.tensors) {
            print("  \(pad(t.name, 36)) \(pad("\(t.type)", 6)) \(pad("\(t.dimensions)", 16)) \(formatBytes(t.byteCount))")
        }
        if maxTensors > 0 && g.tensors.count > maxTensors { print("  … \(g.tensors.count - maxTensors) more") }
    }

    func inspectSafeTensors(_ s: SafeTensorsFile) throws {
        print("safetensors: \(s.path)")
        if !s.metadata.isEmpty {
            print("metadata:")
            for (k, v) in s.metadata.sorted(by: { $0.key < $1.key }) { print("  \(k) = \(v)") }
        }
        var total = 0
        for n in s.tensorNames { total += s.info(n)?.byteRange.count ?? 0 }
        print("tensors (\(s.tensorNames.count), \(formatBytes(total))):")
        for n in limit(s.tensorNames) {
            guard let i = s.info(n) else { continue }
            print("  \(pad(n, 56)) \(pad(i.dtype.rawValue, 5)) \(pad("\(i.shape)", 14)) \(formatBytes(i.byteRange.count))")
        }
    }

    func inspectDirectory() throws {
        let cfg = (file as NSString).appendingPathComponent("config.json")
        if let data = FileManager.default.contents(atPath: cfg) {
            print("config.json:")
            print(String(decoding: data, as: UTF8.self))
        }
        let c = try SafeTensorsCollection(directory: file)
        print("tensors (\(c.names.count)):")
        for n in limit(c.names) {
            guard let i = c.info(n) else { continue }
            print("  \(pad(n, 56)) \(pad(i.dtype.rawValue, 5)) \(pad("\(i.shape)", 14)) \(formatBytes(i.byteRange.count))")
        }
    }

    func describe(_ v: GGUFValue) -> String {
        switch v {
        case .string(let s):
            let oneLine = s.replacingOccurrences(of: "\n", with: "\\n")
            return oneLine.count > 120 ? "\"\(oneLine.prefix(117))…\" (\(s.count) chars)" : "\"\(oneLine)\""
        case .array(let a):
            let head = a.prefix(6).map(describe).joined(separator: ", ")
            return a.count > 6 ? "[\(head), …] (\(a.count) items)" : "[\(head)]"
        case .uint8(let x): return "\(x)"
        case .int8(let x): return "\(x)"
        case .uint16(let x): return "\(x)"
        case .int16(let x): return "\(x)"
        case .uint32(let x): return "\(x)"
        case .int32(let x): return "\(x)"
        case .uint64(let x): return "\(x)"
        case .int64(let x): return "\(x)"
        case .float32(let x): return "\(x)"
        case .float64(let x): return "\(x)"
        case .bool(let x): return "\(x)"
        }
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

func formatBytes(_ b: Int) -> String {
    if b >= 1 << 30 { return String(format: "%.2f GiB", Double(b) / Double(1 << 30)) }
    if b >= 1 << 20 { return String(format: "%.1f MiB", Double(b) / Double(1 << 20)) }
    if b >= 1 << 10 { return String(format: "%.1f KiB", Double(b) / Double(1 << 10)) }
    return "\(b) B"
}
