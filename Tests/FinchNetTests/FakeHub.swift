import Crypto
import FinchFormats
import Foundation
import Hummingbird
import Logging
import NIOCore

/// A local server that speaks the Hugging Face Hub's API for test repositories, as the Hub does:
/// `api/models/ID/revision/REV` (the commit and the files), `ID/resolve/REV/PATH` (a HEAD or GET: a
/// small file's bytes with its git blob id as ETag; an LFS file — a `.safetensors` or `.gguf` — as a
/// 302 to `/blobs/SHA256` with `X-Linked-Etag` and `X-Linked-Size`), `X-Repo-Commit` on both, and
/// `X-Error-Code` on failures. Blobs honour `Range`. Faults: a connection dropped after N bytes of a
/// blob, a blob served corrupted, a gated repository, a token required.
final class FakeHub: @unchecked Sendable {
    struct Repo {
        var commit: String
        var files: [String: [UInt8]]
        var gated = false
    }
    private let lock = NSLock()
    private var repos: [String: Repo] = [:]
    private var blobs: [String: [UInt8]] = [:]
    /// Blob SHA-256 → bytes after which its next GET is cut off (once).
    var dropAfter: [String: Int] = [:]
    /// Blobs served with a byte flipped.
    var corrupt: Set<String> = []
    /// When set, every request needs `Authorization: Bearer <token>`.
    var requiredToken: String?
    private(set) var log: [String] = []

    static func isLFS(_ path: String) -> Bool { path.hasSuffix(".safetensors") || path.hasSuffix(".gguf") }
    static func sha256(_ b: [UInt8]) -> String { SHA256.hash(data: b).map { String(format: "%02x", $0) }.joined() }
    static func gitBlobID(_ b: [UInt8]) -> String {
        Insecure.SHA1.hash(data: Array("blob \(b.count)\u{0}".utf8) + b).map { String(format: "%02x", $0) }.joined()
    }

    func add(_ id: String, commit: String, files: [String: [UInt8]], gated: Bool = false) {
        lock.withLock {
            repos[id] = Repo(commit: commit, files: files, gated: gated)
            for (p, b) in files where Self.isLFS(p) { blobs[Self.sha256(b)] = b }
        }
    }

    /// A test repository from a folder's files.
    func add(_ id: String, commit: String, folder: String, gated: Bool = false) throws {
        var files: [String: [UInt8]] = [:]
        for f in try FileManager.default.contentsOfDirectory(atPath: folder) {
            files[f] = Array(try Data(contentsOf: URL(fileURLWithPath: folder + "/" + f)))
        }
        add(id, commit: commit, files: files, gated: gated)
    }

    var requests: [String] { lock.withLock { log } }
    private func record(_ s: String) { lock.withLock { log.append(s) } }

    func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        var h = HTTPFields()
        h[.init("X-Error-Code")!] = code
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: #"{"error": "\#(message)"}"#)))
    }

    func authorized(_ request: Request) -> Bool {
        guard let t = requiredToken else { return true }
        return request.headers[.authorization] == "Bearer " + t
    }

    func repo(_ context: some RequestContext) -> (String, Repo?) {
        let id = (context.parameters.get("org") ?? "") + "/" + (context.parameters.get("name") ?? "")
        return (id, lock.withLock { repos[id] })
    }

    func commit(of repo: Repo, revision: String) -> String? {
        revision == "main" || revision == repo.commit || revision == "v1" ? repo.commit : nil
    }

    func resolve(_ request: Request, _ context: some RequestContext, head: Bool) -> Response {
        let (id, repo) = self.repo(context)
        let path = context.parameters.getCatchAll().joined(separator: "/")
        record("\(head ? "HEAD" : "GET") resolve \(id) \(path)")
        guard authorized(request) else { return error(.unauthorized, "", "Invalid credentials in Authorization header") }
        guard let repo else { return error(.unauthorized, "RepoNotFound", "Repository not found") }
        if repo.gated { return error(.forbidden, "GatedRepo", "Access to model \(id) is restricted. You must have access to it and be authenticated to access it.") }
        guard let commit = commit(of: repo, revision: context.parameters.get("rev") ?? "") else {
            return error(.notFound, "RevisionNotFound", "Invalid rev id")
        }
        guard let bytes = repo.files[path] else { return error(.notFound, "EntryNotFound", "\(path) does not exist on \"\(commit)\"") }
        var h = HTTPFields()
        h[.init("X-Repo-Commit")!] = commit
        if Self.isLFS(path) {
            let sha = Self.sha256(bytes)
            h[.eTag] = "\"\(Self.gitBlobID(Array("version https://git-lfs.github.com/spec/v1\noid sha256:\(sha)\nsize \(bytes.count)\n".utf8)))\""
            h[.init("X-Linked-Etag")!] = "\"\(sha)\""
            h[.init("X-Linked-Size")!] = String(bytes.count)
            h[.location] = "/blobs/\(sha)"
            return Response(status: .found, headers: h)
        }
        h[.eTag] = "\"\(Self.gitBlobID(bytes))\""
        h[.contentLength] = String(bytes.count)
        return Response(status: .ok, headers: h, body: head ? .init() : .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    struct Cut: Error {}

    func blob(_ request: Request, _ context: some RequestContext) -> Response {
        let sha = context.parameters.get("sha") ?? ""
        let range = request.headers[.range]
        record("GET blob \(sha.prefix(8))" + (range.map { " " + $0 } ?? ""))
        guard var bytes = lock.withLock({ blobs[sha] }) else { return error(.notFound, "EntryNotFound", "no such blob") }
        if corrupt.contains(sha) { bytes[bytes.count / 2] ^= 0xFF }
        var start = 0
        var h = HTTPFields()
        var status = HTTPResponse.Status.ok
        if let range, range.hasPrefix("bytes="), let s = Int(range.dropFirst(6).split(separator: "-").first ?? "") {
            guard s < bytes.count else { return Response(status: .rangeNotSatisfiable) }
            start = s; status = .partialContent
            h[.contentRange] = "bytes \(s)-\(bytes.count - 1)/\(bytes.count)"
        }
        let body = Array(bytes[start...])
        h[.contentLength] = String(body.count)
        let cut = lock.withLock { () -> Int? in
            guard let n = dropAfter[sha] else { return nil }
            dropAfter[sha] = nil
            return n - start
        }
        return Response(status: status, headers: h, body: ResponseBody(contentLength: body.count) { writer in
            if let cut, cut > 0, cut < body.count {
                try await writer.write(ByteBuffer(bytes: body[..<cut]))
                throw Cut()   // the connection closes short of Content-Length
            }
            try await writer.write(ByteBuffer(bytes: body))
            try await writer.finish(nil)
        })
    }

    func application() -> some ApplicationProtocol {
        let router = Router()
        router.get("/api/models/:org/:name/revision/:rev") { request, context -> Response in
            let (id, repo) = self.repo(context)
            self.record("GET api \(id)")
            guard self.authorized(request) else { return self.error(.unauthorized, "", "Invalid credentials in Authorization header") }
            guard let repo else { return self.error(.unauthorized, "RepoNotFound", "Repository not found") }
            guard let commit = self.commit(of: repo, revision: context.parameters.get("rev") ?? "") else {
                return self.error(.notFound, "RevisionNotFound", "Invalid rev id: \(context.parameters.get("rev") ?? "")")
            }
            let siblings = repo.files.keys.sorted().map { JSONValue.object([("rfilename", .string($0))]) }
            let json = JSONValue.object([("id", .string(id)), ("sha", .string(commit)), ("siblings", .array(siblings))])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json.serialized())))
        }
        router.on("/:org/:name/resolve/:rev/**", method: .head) { request, context in self.resolve(request, context, head: true) }
        router.get("/:org/:name/resolve/:rev/**") { request, context in self.resolve(request, context, head: false) }
        router.get("/blobs/:sha") { request, context in self.blob(request, context) }
        var logger = Logger(label: "fake-hub")
        logger.logLevel = .critical
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
    }
}
