@testable import FinchModels
import FinchFormats
@testable import FinchNet
import FinchTestSupport
import Foundation
import HummingbirdTesting
import XCTest

/// Models by Hub id against a local server that speaks the Hub's API (`FakeHub`): a download into a fresh
/// cache laid out as huggingface_hub lays it out, the same id offline, a dropped connection resumed, a
/// corrupted blob refused, gated / missing / unknown-revision errors, GGUF choice; and a cache that
/// huggingface_hub itself wrote (Scripts/fixtures/make_hub_cache.py) read as it is.
final class HubTests: XCTestCase {
    static let commit = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
    static let tiny = Fixtures.path("tiny-llama/hf")

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "finch-hub-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    static func client(port: Int?, cache: String, token: String? = nil, offline: Bool = false) -> HubClient {
        let c = HubClient(settings: HubSettings(endpoint: "http://127.0.0.1:\(port ?? 9)", cacheDirectory: cache, token: token, offline: offline))
        c.policy = RetryPolicy(attempts: 3, baseDelay: 0.01, maxDelay: 0.05)
        return c
    }

    /// The first logits of a prompt, from a model loaded at `path`.
    static func logits(_ path: String) throws -> [Float] {
        let lm = try LoadedModel.load(path)
        let l = try lm.model.nextTokenLogits([lm.tokenizer.encode("Hello there, Brindlewick")])
        return Array(l.row(l.rows[0].lowerBound))
    }

    func hub() throws -> FakeHub {
        let h = FakeHub()
        try h.add("finch-test/tiny-llama", commit: Self.commit, folder: Self.tiny)
        return h
    }

    func testDownloadsIntoAFreshCacheThenLoadsOffline() async throws {
        let fake = try hub(), cache = tempDir()
        let snapshot = try await fake.application().test(.live) { client in
            try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: Self.client(port: client.port, cache: cache))
        }
        let repo = cache + "/models--finch-test--tiny-llama"
        XCTAssertEqual(snapshot, repo + "/snapshots/" + Self.commit)
        XCTAssertEqual(try String(contentsOfFile: repo + "/refs/main", encoding: .utf8), Self.commit)
        // Every file the model needs, each a relative link to its blob named by its ETag.
        let wanted = ["chat_template.jinja", "config.json", "generation_config.json", "model-00001-of-00003.safetensors",
                      "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json",
                      "tokenizer.json", "tokenizer_config.json"]
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: snapshot).sorted(), wanted)
        for f in wanted {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/" + f)))
            let etag = FakeHub.isLFS(f) ? FakeHub.sha256(bytes) : FakeHub.gitBlobID(bytes)
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: snapshot + "/" + f), "../../blobs/" + etag, f)
            XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: repo + "/blobs/" + etag))), bytes, f)
        }
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: repo + "/blobs").contains { $0.hasSuffix(".incomplete") })
        XCTAssertEqual(try Self.logits(snapshot), try Self.logits(Self.tiny))

        // Offline (HF_HUB_OFFLINE), with no server at all: the same snapshot.
        let offline = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model,
                                                      client: Self.client(port: nil, cache: cache, offline: true))
        XCTAssertEqual(offline, snapshot)
        // Online again: the files are there, so nothing but the revision is asked.
        let before = fake.requests.count
        try await fake.application().test(.live) { client in
            _ = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama@main")!, kind: .model, client: Self.client(port: client.port, cache: cache))
        }
        XCTAssertEqual(fake.requests.count - before, 1)
        // The Hub unreachable: the cached snapshot, with a notice.
        let notices = Notices()
        let unreachable = Self.client(port: 9, cache: cache)
        unreachable.notice = { notices.add($0) }
        let fallback = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: unreachable)
        XCTAssertEqual(fallback, snapshot)
        XCTAssertTrue(notices.all.contains { $0.contains("using the cached finch-test/tiny-llama") }, "\(notices.all)")
        // Offline and not cached: an error that says so.
        do {
            _ = try await HubModel.resolveAsync(HubRepoID("finch-test/other")!, kind: .model, client: Self.client(port: nil, cache: cache, offline: true))
            XCTFail("not cached")
        } catch let e as HubError {
            XCTAssertEqual(e.kind, .notCached)
            XCTAssertTrue(e.description.contains("HF_HUB_OFFLINE"), e.description)
        }
    }

    func testDroppedConnectionResumesWithRange() async throws {
        let fake = try hub(), cache = tempDir()
        let shard = Array(try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/model-00002-of-00003.safetensors")))
        let sha = FakeHub.sha256(shard)
        fake.dropAfter[sha] = 50_000
        let notices = Notices()
        let snapshot = try await fake.application().test(.live) { client in
            let c = Self.client(port: client.port, cache: cache)
            c.notice = { notices.add($0) }
            return try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: c)
        }
        XCTAssertTrue(fake.requests.contains("GET blob \(sha.prefix(8)) bytes=50000-"), "\(fake.requests)")
        XCTAssertTrue(notices.all.contains { $0.contains("resuming at 50000 bytes") }, "\(notices.all)")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: snapshot + "/model-00002-of-00003.safetensors"))), shard)
        XCTAssertEqual(try Self.logits(snapshot), try Self.logits(Self.tiny))
    }

    func testPartialFileOfAKilledDownloadIsResumed() async throws {
        let fake = try hub(), cache = tempDir()
        let shard = Array(try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/model-00003-of-00003.safetensors")))
        let sha = FakeHub.sha256(shard)
        // What a process killed mid-download leaves: the first bytes under .incomplete, nothing that looks whole.
        let blobs = cache + "/models--finch-test--tiny-llama/blobs"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        try Data(shard[..<70_000]).write(to: URL(fileURLWithPath: blobs + "/" + sha + ".incomplete"))
        let snapshot = try await fake.application().test(.live) { client in
            try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: Self.client(port: client.port, cache: cache))
        }
        XCTAssertTrue(fake.requests.contains("GET blob \(sha.prefix(8)) bytes=70000-"), "\(fake.requests)")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: snapshot + "/model-00003-of-00003.safetensors"))), shard)
    }

    func testCorruptedBlobIsRefusedByHash() async throws {
        let fake = try hub(), cache = tempDir()
        let shard = Array(try Data(contentsOf: URL(fileURLWithPath: Self.tiny + "/model-00001-of-00003.safetensors")))
        let sha = FakeHub.sha256(shard)
        fake.corrupt = [sha]
        try await fake.application().test(.live) { client in
            do {
                _ = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: Self.client(port: client.port, cache: cache))
                XCTFail("a corrupted blob must be refused")
            } catch let e as HubError {
                XCTAssertEqual(e.kind, .corrupt)
                XCTAssertTrue(e.description.contains("not to the ETag \(sha)"), e.description)
            }
        }
        let blobs = cache + "/models--finch-test--tiny-llama/blobs"
        XCTAssertFalse(FileManager.default.fileExists(atPath: blobs + "/" + sha))
        XCTAssertFalse(FileManager.default.fileExists(atPath: blobs + "/" + sha + ".incomplete"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache + "/models--finch-test--tiny-llama/snapshots/\(Self.commit)/model-00001-of-00003.safetensors"))
    }

    func testGatedMissingAndUnknownRevisionSayWhatToDo() async throws {
        let fake = try hub(), cache = tempDir(), cache2 = tempDir(), cache3 = tempDir()
        try fake.add("finch-test/gated", commit: Self.commit, folder: Self.tiny, gated: true)
        try await fake.application().test(.live) { client in
            let c = Self.client(port: client.port, cache: cache)
            for (spec, kind, says) in [("finch-test/gated", HubError.Kind.gated, "ask for access at http://127.0.0.1:\(client.port!)/finch-test/gated"),
                                       ("finch-test/nope", .repositoryNotFound, "check the id"),
                                       ("finch-test/tiny-llama@v9", .revisionNotFound, "the revision 'v9' is not there")] {
                do {
                    _ = try await HubModel.resolveAsync(HubRepoID(spec)!, kind: .model, client: c)
                    XCTFail(spec)
                } catch let e as HubError {
                    XCTAssertEqual(e.kind, kind, spec)
                    XCTAssertTrue(e.description.contains(says), e.description)
                    if kind != .revisionNotFound { XCTAssertTrue(e.description.contains("HF_TOKEN"), e.description) }
                }
            }
            // A token the server wants: sent as a Bearer token; a wrong one is refused with advice.
            fake.requiredToken = "hf_secret"
            let ok = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model,
                                                     client: Self.client(port: client.port, cache: cache2, token: "hf_secret"))
            XCTAssertTrue(FileManager.default.fileExists(atPath: ok + "/config.json"))
            do {
                _ = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model,
                                                    client: Self.client(port: client.port, cache: cache3, token: "hf_wrong"))
                XCTFail("a wrong token must be refused")
            } catch let e as HubError {
                XCTAssertEqual(e.kind, .unauthorized)
                XCTAssertTrue(e.description.contains("settings/tokens"), e.description)
            }
            fake.requiredToken = nil
        }
    }

    func testGGUFRepositoryChoosesAFileByNameOrQuantType() async throws {
        let fake = FakeHub(), cache = tempDir()
        let gguf = Array(try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama/tiny.gguf"))))
        fake.add("finch-test/tiny-GGUF", commit: Self.commit,
                 files: ["tiny-Q8_0.gguf": gguf, "tiny-Q4_K_M.gguf": gguf + [0], "README.md": Array("tiny".utf8)])
        try await fake.application().test(.live) { client in
            let c = Self.client(port: client.port, cache: cache)
            let path = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-GGUF:q8_0")!, kind: .model, client: c)
            XCTAssertTrue(path.hasSuffix("/snapshots/\(Self.commit)/tiny-Q8_0.gguf"), path)
            XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path))), gguf)
            XCTAssertFalse(FileManager.default.fileExists(atPath: cache + "/models--finch-test--tiny-GGUF/snapshots/\(Self.commit)/tiny-Q4_K_M.gguf"))
            for (spec, says) in [("finch-test/tiny-GGUF", "has 2 GGUF files"), ("finch-test/tiny-GGUF:Q4_K", "no GGUF file is named or quantized 'Q4_K'")] {
                do {
                    _ = try await HubModel.resolveAsync(HubRepoID(spec)!, kind: .model, client: c)
                    XCTFail(spec)
                } catch let e as HubError { XCTAssertTrue(e.description.contains(says), e.description) }
            }
        }
    }

    func testHubIDsAndSettings() throws {
        XCTAssertEqual(HubRepoID("Qwen/Qwen2.5-0.5B-Instruct"), HubRepoID(id: "Qwen/Qwen2.5-0.5B-Instruct"))
        XCTAssertEqual(HubRepoID("org/name@v1.0:Q4_K_M"), HubRepoID(id: "org/name", revision: "v1.0", file: "Q4_K_M"))
        XCTAssertEqual(HubRepoID("org/name")?.cacheFolder, "models--org--name")
        for notID in ["smollm2-135m", "/abs/path", "./rel/path", "a/b/c", "runs/../x", "org/", "org/name@", "org/name:"] {
            XCTAssertNil(HubRepoID(notID), notID)
        }
        let s = HubSettings.fromEnvironment(["HF_HOME": "/h", "HF_ENDPOINT": "http://mirror/", "HF_HUB_OFFLINE": "1", "HF_TOKEN": "t"])
        XCTAssertEqual(s.cacheDirectory, "/h/hub"); XCTAssertEqual(s.endpoint, "http://mirror"); XCTAssertTrue(s.offline); XCTAssertEqual(s.token, "t")
        let t = HubSettings.fromEnvironment(["HF_HUB_CACHE": "/c", "XDG_CACHE_HOME": "/x"])
        XCTAssertEqual(t.cacheDirectory, "/c"); XCTAssertEqual(t.endpoint, "https://huggingface.co"); XCTAssertFalse(t.offline)
        XCTAssertEqual(HubSettings.fromEnvironment(["XDG_CACHE_HOME": "/x"]).cacheDirectory, "/x/huggingface/hub")
    }
}

final class Notices: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}

/// A cache huggingface_hub wrote (Scripts/fixtures/make_hub_cache.py: its snapshot_download from the fake Hub).
final class PythonHubCacheTests: XCTestCase {
    func testACacheHuggingFaceHubWroteIsReadAsItIs() async throws {
        let cache = try Fixtures.required("hub-cache/hub")
        let client = HubTests.client(port: nil, cache: cache, offline: true)
        let model = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama")!, kind: .model, client: client)
        XCTAssertEqual(model, cache + "/models--finch-test--tiny-llama/snapshots/" + HubTests.commit)
        let adapter = try await HubModel.resolveAsync(HubRepoID("finch-test/tiny-llama-lora")!, kind: .adapter, client: client)
        // The model and the adapter from the cache compute what they compute from their own folders.
        func logits(_ model: String, _ adapter: String) throws -> [Float] {
            let lm = try LoadedModel.load(model)
            try lm.loadAdapter(directory: adapter)
            let l = try lm.model.nextTokenLogits([lm.tokenizer.encode("Hello there, Brindlewick")])
            return Array(l.row(l.rows[0].lowerBound))
        }
        let direct = try logits(HubTests.tiny, Fixtures.path("tiny-llama/peft-trained/trained"))
        XCTAssertEqual(try logits(model, adapter), direct)
        XCTAssertNotEqual(try HubTests.logits(HubTests.tiny), direct, "the adapter should change the logits")
    }
}
