/// A checkpoint made of one or more safetensors files in a directory, addressed by tensor name.
///
/// Resolution, in order:
/// 1. `model.safetensors.index.json` (`{"weight_map": {name: shard file}}`, Hugging Face sharding);
/// 2. a single `model.safetensors`;
/// 3. every `*.safetensors` file in the directory (e.g. `adapter_model.safetensors`), names
///    required to be unique across files.
///
/// Errors about a tensor name the shard file that holds it.
public final class SafeTensorsCollection: @unchecked Sendable {
    /// The directory the collection was opened from.
    public let directory: String
    /// All tensor names: index order for sharded checkpoints, else file then header order.
    public let names: [String]
    /// The opened files, in the order they were resolved.
    public let files: [SafeTensorsFile]
    /// `metadata` from the index file, or the single file's `__metadata__`.
    public let metadata: [String: String]

    private let location: [String: Int]  // name -> index into files

    /// Opens the checkpoint in `directory` (see the type's documentation for how files are found).
    public init(directory: String) throws {
        self.directory = directory
        let indexPath = Self.join(directory, "model.safetensors.index.json")
        let singlePath = Self.join(directory, "model.safetensors")
        if Self.isFile(indexPath) {
            let (weightMap, meta) = try Self.readIndex(indexPath)
            var fileIndex: [String: Int] = [:]
            var files: [SafeTensorsFile] = []
            var location: [String: Int] = [:]
            var names: [String] = []
            for (name, shard) in weightMap {
                let fi: Int
                if let i = fileIndex[shard] {
                    fi = i
                } else {
                    let f = try SafeTensorsFile(path: Self.join(directory, shard))
                    fi = files.count
                    files.append(f)
                    fileIndex[shard] = fi
                }
                guard files[fi].contains(name) else {
                    throw FormatError.missingTensor(path: files[fi].path, name: name)
                }
                guard location.updateValue(fi, forKey: name) == nil else {
                    throw FormatError.badHeader(path: indexPath, reason: "tensor '\(name)' is listed twice in weight_map")
                }
                names.append(name)
            }
            self.files = files
            self.names = names
            self.location = location
            self.metadata = meta
        } else {
            let paths: [String]
            if Self.isFile(singlePath) {
                paths = [singlePath]
            } else {
                paths = try Self.listSafetensors(directory)
                if paths.isEmpty {
                    if let pickle = Self.listPickles(directory).first { throw FormatError.pickleCheckpoint(path: pickle) }
                    throw FormatError.io(path: directory, message: "no model.safetensors.index.json, model.safetensors or *.safetensors file found")
                }
            }
            var files: [SafeTensorsFile] = []
            var location: [String: Int] = [:]
            var names: [String] = []
            for p in paths {
                let f = try SafeTensorsFile(path: p)
                for name in f.tensorNames {
                    if let other = location[name] {
                        throw FormatError.badHeader(path: p, reason: "tensor '\(name)' also appears in \(files[other].path)")
                    }
                    location[name] = files.count
                    names.append(name)
                }
                files.append(f)
            }
            self.files = files
            self.names = names
            self.location = location
            self.metadata = files.count == 1 ? files[0].metadata : [:]
        }
    }

    /// The file that holds tensor `name`, or nil.
    public func file(containing name: String) -> SafeTensorsFile? {
        location[name].map { files[$0] }
    }

    /// True if some file holds tensor `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// Header entry of tensor `name`, or nil.
    public func info(_ name: String) -> SafeTensorInfo? {
        file(containing: name)?.info(name)
    }

    /// Raw bytes of tensor `name` (valid while this collection lives).
    /// - Throws: ``FormatError/missingTensor(path:name:)`` naming the directory.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        try requireFile(name).bytes(name)
    }

    /// Tensor `name` converted to Float.
    public func floats(_ name: String) throws -> [Float] {
        try requireFile(name).floats(name)
    }

    /// Tensor `name` converted to Float into `out` (exactly its element count).
    public func floats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        try requireFile(name).floats(name, into: out)
    }

    /// Elements `elements` of tensor `name` converted to Float into `out` (exactly `elements.count`).
    public func floats(_ name: String, elements: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) throws {
        try requireFile(name).floats(name, elements: elements, into: out)
    }

    private func requireFile(_ name: String) throws -> SafeTensorsFile {
        guard let f = file(containing: name) else { throw FormatError.missingTensor(path: directory, name: name) }
        return f
    }

    // MARK: - Helpers

    static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    private static func isFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    private static func listSafetensors(_ dir: String) throws -> [String] {
        try list(dir) { $0.hasSuffix(".safetensors") }
    }

    /// PyTorch pickle checkpoints in `dir` (refused by name when there is nothing else).
    private static func listPickles(_ dir: String) -> [String] {
        (try? list(dir, FormatError.isPickleName)) ?? []
    }

    /// The regular, non-hidden files of `dir` whose names `keep` accepts, sorted.
    private static func list(_ dir: String, _ keep: (String) -> Bool) throws -> [String] {
        guard let d = opendir(dir) else {
            throw FormatError.io(path: dir, message: "cannot list directory: \(errnoString())")
        }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if keep(name), !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted().map { join(dir, $0) }.filter(isFile)
    }

    /// Reads `weight_map` (in file order) and `metadata` (string values only) from an index file.
    private static func readIndex(_ path: String) throws -> ([(String, String)], [String: String]) {
        let file = try MappedFile(path: path)
        let json: JSONValue
        do {
            json = try JSONParser.parse(file.bytes)
        } catch {
            throw FormatError.badHeader(path: path, reason: "invalid JSON at byte \(error.offset): \(error.message)")
        }
        guard let map = json["weight_map"]?.objectValue else {
            throw FormatError.badHeader(path: path, reason: "no \"weight_map\" object")
        }
        var out: [(String, String)] = []
        out.reserveCapacity(map.count)
        for m in map {
            guard let shard = m.value.stringValue else {
                throw FormatError.badHeader(path: path, reason: "weight_map entry '\(m.key)' is \(m.value.kindName), expected a file name")
            }
            guard !shard.isEmpty, !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw FormatError.badHeader(path: path, reason: "weight_map entry '\(m.key)' points outside the directory: '\(shard)'")
            }
            out.append((m.key, shard))
        }
        var meta: [String: String] = [:]
        if let members = json["metadata"]?.objectValue {
            for m in members {
                switch m.value {
                case .string(let s): meta[m.key] = s
                case .number(let t): meta[m.key] = t
                case .bool(let b): meta[m.key] = b ? "true" : "false"
                default: continue
                }
            }
        }
        return (out, meta)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
