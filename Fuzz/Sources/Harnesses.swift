import CFinchFuzz
@testable import FinchFormats
@testable import FinchModels
import FinchTokenizer
import FinchTrain
import Foundation

// libFuzzer harnesses for everything Finch reads from files people download: one binary, the
// harness chosen by FINCH_FUZZ_TARGET (Scripts/hardening/fuzz.sh NAME SECONDS sets it). Each harness feeds
// the input to the public loader as a user's file would reach it; any error thrown is the
// expected outcome for bad input — only crashes, hangs, sanitizer reports and runaway memory
// are findings. Files go to /dev/shm (memory) so that the loaders' mmap paths are the ones fuzzed.

/// The harnesses by name.
enum Harness: String, CaseIterable {
    case safetensors, safetensorsIndex = "safetensors-index", gguf, tokenizerJSON = "tokenizer-json", tokenize, jinja, config, yaml, dataset, http

    func run(_ data: [UInt8]) {
        switch self {
        case .safetensors: Harness.safetensors(data)
        case .safetensorsIndex: Harness.safetensorsIndex(data)
        case .gguf: Harness.gguf(data)
        case .tokenizerJSON: Harness.tokenizerJSON(data)
        case .tokenize: Harness.tokenize(data)
        case .jinja: Harness.jinja(data)
        case .config: Harness.config(data)
        case .yaml: Harness.yaml(data)
        case .dataset: Harness.dataset(data)
        case .http: HTTPHarness.request(data)
        }
    }

    static let scratch = "/dev/shm/finch-fuzz-\(getpid())"

    /// Writes `data` to a scratch file with `suffix` and returns its path.
    static func file(_ data: [UInt8], _ suffix: String) -> String {
        let path = scratch + suffix
        _ = FileManager.default.createFile(atPath: path, contents: Data(data))
        return path
    }

    /// Repository paths (the fixtures) from FINCH_FUZZ_ROOT, else the working directory.
    static let root = ProcessInfo.processInfo.environment["FINCH_FUZZ_ROOT"] ?? FileManager.default.currentDirectoryPath

    /// The tokenizers `tokenize` and `dataset` use: tiny LLaMA's byte-level BPE (with a chat
    /// template) and tiny T5's Unigram.
    static let bpe = try! Tokenizer(tokenizerJSONAt: root + "/Tests/Fixtures/tiny-llama/hf/tokenizer.json",
                                    configAt: root + "/Tests/Fixtures/tiny-llama/hf/tokenizer_config.json")
    static let unigram = try! Tokenizer(tokenizerJSONAt: root + "/Tests/Fixtures/tiny-t5/v1_1/hf/tokenizer.json",
                                        configAt: root + "/Tests/Fixtures/tiny-t5/v1_1/hf/tokenizer_config.json")

    static func safetensors(_ data: [UInt8]) {
        guard let f = try? SafeTensorsFile(path: file(data, ".safetensors")) else { return }
        for name in f.tensorNames.prefix(64) { _ = try? f.floats(name) }
    }

    /// A sharded checkpoint's directory: tiny LLaMA's three shards (links) beside a fuzzed
    /// model.safetensors.index.json.
    static let shardDirectory: String = {
        let dir = scratch + "-sharded"
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        try! fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for i in 1...3 {
            let name = "model-0000\(i)-of-00003.safetensors"
            try! fm.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: root + "/Tests/Fixtures/tiny-llama/hf/" + name)
        }
        return dir
    }()

    static func safetensorsIndex(_ data: [UInt8]) {
        _ = FileManager.default.createFile(atPath: shardDirectory + "/model.safetensors.index.json", contents: Data(data))
        guard let c = try? SafeTensorsCollection(directory: shardDirectory) else { return }
        for name in c.names.prefix(64) { _ = try? c.floats(name) }
    }

    static func gguf(_ data: [UInt8]) {
        guard let f = try? GGUFFile(path: file(data, ".gguf")) else { return }
        for t in f.tensors.prefix(64) { _ = try? f.dequantize(t) }   // every quant type's block decoding
        if let t = try? Tokenizer(gguf: f) { _ = t.decode(t.encode("Hello world, 123 café 🙂", addSpecialTokens: true)) }
        if let c = try? ModelRegistry.config(gguf: f) { _ = c.decoderSpec }
    }

    static func tokenizerJSON(_ data: [UInt8]) {
        guard let t = try? Tokenizer(tokenizerJSONAt: file(data, ".tokenizer.json")) else { return }
        for s in ["Hello world, 123 café 🙂", "  two  spaces\tand\nlines", "<s></s><unk>", ""] {
            let ids = t.encode(s, addSpecialTokens: true)
            _ = t.decode(ids)
            _ = t.decode(ids, skipSpecialTokens: true)
        }
        if let template = t.chatTemplate, let ct = try? ChatTemplate(template) {
            _ = try? ct.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
        }
    }

    static func tokenize(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        for t in [bpe, unigram] {
            let ids = t.encode(text, addSpecialTokens: true)
            _ = t.decode(ids)
            let stream = t.streamDecoder()
            for id in ids { _ = stream.append(id) }
            _ = stream.flush()
        }
    }

    static func jinja(_ data: [UInt8]) {
        guard let t = try? ChatTemplate(String(decoding: data, as: UTF8.self)) else { return }
        let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "hi"),
                        ChatMessage(role: "assistant", content: "hello"), ChatMessage(role: "user", content: "and?")]
        _ = try? t.render(messages: messages, addGenerationPrompt: true,
                          variables: ["bos_token": .string("<s>"), "eos_token": .string("</s>")])
    }

    static func config(_ data: [UInt8]) {
        let bytes = Data(data)
        if let json = try? JSONParser.parse(data), let family = try? ModelRegistry.family(config: json, path: "config.json") {
            if let read = family.readConfig, let c = try? read(bytes, "config.json") {
                _ = c.decoderSpec
                _ = c.huggingFaceConfigJSON(torchDType: "float32", tieWordEmbeddings: true)
            }
        }
        if let t5 = try? T5Config(json: bytes, path: "config.json") {
            for r in [-200, -3, 0, 5, 300] { _ = t5.bucket(relative: r, bidirectional: r > 0) }
        }
    }

    static func yaml(_ data: [UInt8]) {
        guard let c = try? TrainingConfig.load(yamlAt: file(data, ".yaml")) else { return }
        try? c.validate()
    }

    static func dataset(_ data: [UInt8]) {
        for ext in [".jsonl", ".json"] {
            let path = file(data, ext)
            var options = DatasetOptions(maxSeqLen: 64)
            _ = try? TrainingData.loadDataset(path: path, options: options, tokenizer: bpe)
            options.decoderStartTokenId = 0
            _ = try? TrainingData.loadDataset(path: path, options: options, tokenizer: unigram)
        }
    }
}

/// The harness this process runs (read once; `http` starts its server here, before the first input).
let selected: Harness = {
    let name = ProcessInfo.processInfo.environment["FINCH_FUZZ_TARGET"] ?? ""
    guard let h = Harness(rawValue: name) else {
        FileHandle.standardError.write(Data("set FINCH_FUZZ_TARGET to one of: \(Harness.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    if h == .http { _ = HTTPHarness.responder }
    return h
}()

/// One input through the selected harness.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    selected.run(bytes)
    return 0
}

/// The executable's entry point (SwiftPM names it after the target): libFuzzer's driver.
@_cdecl("finch_fuzz_main")
public func finchFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    _ = selected
    atexit {
        // The scratch files of this process (a crash leaves them, beside the artifact).
        let name = (Harness.scratch as NSString).lastPathComponent
        for f in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        where f.hasPrefix(name + ".") || f.hasPrefix(name + "-") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/" + f)
        }
    }
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
