import AsyncHTTPClient
import Crypto
import FinchFormats
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A revision's commit and files.
public struct HubListing: Sendable, Equatable {
    public var commit: String
    public var files: [String]
    /// Read from the cache (offline, or the Hub could not be reached), not from the Hub.
    public var fromCache: Bool
}

/// How far a download is.
public struct HubProgress: Sendable {
    public var repository: String
    public var file: String
    public var bytes: Int64
    /// The file's size when the Hub said it.
    public var total: Int64?
    /// Bytes that were already there (a resumed download) when this attempt started.
    public var resumedAt: Int64
    public var finished: Bool
}

/// Files of Hugging Face Hub repositories, through the cache: `listing` resolves a revision to its commit
/// and files (the Hub's `api/models/ID/revision/REV`), `fetch` puts files into the cache as
/// huggingface_hub's `hf_hub_download` does: a HEAD of `ID/resolve/COMMIT/PATH` for the file's ETag (an LFS
/// file's `X-Linked-Etag`, its SHA-256) and where it lives (the redirect to the blob), then the bytes into
/// `blobs/ETAG.incomplete`, resumed with `Range` after a dropped connection, checked against the ETag
/// (SHA-256, or the git blob id of a small file), synced and renamed; then the snapshot's link. With
/// `HF_HUB_OFFLINE` only the cache is read.
public final class HubClient: @unchecked Sendable {
    public let settings: HubSettings
    public let cache: HubCache
    public var policy = RetryPolicy(attempts: 8, baseDelay: 1, maxDelay: 30)
    public var progress: (@Sendable (HubProgress) -> Void)?
    /// Things worth telling a user (a retry, a resumed download, a fallback to the cache).
    public var notice: (@Sendable (String) -> Void)?

    public init(settings: HubSettings = .fromEnvironment()) {
        self.settings = settings
        self.cache = HubCache(root: settings.cacheDirectory)
    }

    var authorization: [(String, String)] { settings.token.map { [("Authorization", "Bearer " + $0)] } ?? [] }

    static func escape(_ s: String, keepSlashes: Bool) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~" + (keepSlashes ? "/" : ""))
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    // MARK: Listing

    public func listing(_ repo: HubRepoID) async throws -> HubListing {
        if settings.offline { return try cachedListing(repo, why: "HF_HUB_OFFLINE is set") }
        let url = settings.endpoint + "/api/models/" + repo.id + "/revision/" + Self.escape(repo.revision, keepSlashes: false)
        let answer: HTTPAnswer
        do {
            // With the revision cached, one try: a Hub that cannot be reached falls back to the cache at once (as
            // huggingface_hub does); without it, the retries.
            let cached = cache.commit(repo) != nil
            answer = try await HTTP.send(url: url, headers: authorization + [("Accept", "application/json")], timeout: cached ? 10 : 60,
                                         policy: cached ? RetryPolicy(attempts: 1) : policy,
                                         onRetry: { [notice] r, s in notice?("the Hub: \(r); trying again in \(Int(s.rounded())) s") })
        } catch let e as NetError where e.status == nil {
            if cache.commit(repo) != nil {
                notice?("cannot reach \(settings.endpoint) (\(e.message)); using the cached \(repo)")
                return try cachedListing(repo, why: "the Hub could not be reached")
            }
            throw HubError(.notCached, repo.description, "the Hub (\(settings.endpoint)) could not be reached and the model is not in the cache \(settings.cacheDirectory)",
                           advice: "check the network (HF_ENDPOINT for a mirror), or copy the model into the cache")
        }
        if RetryPolicy.retries(status: answer.status), cache.commit(repo) != nil {
            notice?("the Hub answered HTTP \(answer.status); using the cached \(repo)")
            return try cachedListing(repo, why: "the Hub is failing")
        }
        guard answer.status == 200 else { throw failure(answer, repo: repo, file: nil) }
        guard let json = try? JSONParser.parse(answer.text), let sha = json["sha"]?.stringValue, HubRepoID.isCommitHash(sha),
              let siblings = json["siblings"]?.arrayValue else {
            throw HubError(.other, repo.description, "the Hub's answer for the revision is not a model's (no sha and siblings): \(answer.text.prefix(200))",
                           advice: "check HF_ENDPOINT (it must be a Hugging Face Hub or a mirror of its API)")
        }
        return HubListing(commit: sha, files: siblings.compactMap { $0["rfilename"]?.stringValue }.sorted(), fromCache: false)
    }

    func cachedListing(_ repo: HubRepoID, why: String) throws -> HubListing {
        guard let commit = cache.commit(repo) else {
            throw HubError(.notCached, repo.description, "not in the cache \(settings.cacheDirectory) (no \(repo.isCommit ? "snapshot" : "refs/" + repo.revision)) and \(why)",
                           advice: "download it once with the network on (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE / HF_HOME at the cache that holds it")
        }
        return HubListing(commit: commit, files: cache.files(repo, commit: commit), fromCache: true)
    }

    /// The error for a Hub answer that is not a success, by its status and `X-Error-Code`.
    func failure(_ a: HTTPAnswer, repo: HubRepoID, file: String?) -> HubError {
        let code = a.header("X-Error-Code") ?? ""
        let said = (try? JSONParser.parse(a.text))?["error"]?.stringValue ?? a.header("X-Error-Message") ?? String(a.text.prefix(200))
        let page = settings.endpoint + "/" + repo.id
        let tokenAdvice = settings.token == nil ? "set HF_TOKEN (a token from \(settings.endpoint)/settings/tokens) or run `hf auth login`"
            : "the token in use (HF_TOKEN or the token file) may not read it: check it at \(settings.endpoint)/settings/tokens"
        switch (a.status, code) {
        case (_, "GatedRepo"), (403, _):
            return HubError(.gated, repo.id, "a gated model: its files need an accepted access request (HTTP \(a.status): \(said))",
                            advice: "ask for access at \(page) while signed in, then \(tokenAdvice)")
        case (_, "RepoNotFound"):
            return HubError(.repositoryNotFound, repo.id, "no such model on \(settings.endpoint), or a private one (HTTP \(a.status))",
                            advice: "check the id (ORG/NAME, as on \(page)); for a private model \(tokenAdvice)")
        case (_, "RevisionNotFound"):
            return HubError(.revisionNotFound, repo.id, "the revision '\(repo.revision)' is not there (HTTP \(a.status))",
                            advice: "give a branch, tag or commit of \(page) after '@' (or none for main)")
        case (_, "EntryNotFound"):
            return HubError(.fileNotFound, repo.id + "/" + (file ?? "?"), "the file is not in the repository at \(repo.revision) (HTTP \(a.status))",
                            advice: "check the file name against \(page)/tree/\(repo.revision)")
        case (401, _):
            return HubError(.unauthorized, repo.id, "the Hub refused the request (HTTP 401: \(said))", advice: tokenAdvice)
        case (404, _):
            return file == nil
                ? HubError(.repositoryNotFound, repo.id, "not found on \(settings.endpoint) (HTTP 404)", advice: "check the id (ORG/NAME) and the revision")
                : HubError(.fileNotFound, repo.id + "/" + file!, "not found (HTTP 404)", advice: "check the file name against \(page)")
        default:
            return HubError(.other, repo.id + (file.map { "/" + $0 } ?? ""), "the Hub answered HTTP \(a.status): \(said)",
                            advice: RetryPolicy.retries(status: a.status) ? "the Hub kept failing; try again later" : "check HF_ENDPOINT and the id")
        }
    }

    // MARK: Files

    /// Puts `files` of `commit` into the cache (each one not there already) and returns the snapshot folder.
    public func fetch(_ repo: HubRepoID, commit: String, files: [String]) async throws -> String {
        let snapshot = cache.snapshot(repo, commit: commit)
        for f in files {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: snapshot + "/" + f, isDirectory: &isDir), !isDir.boolValue { continue }
            if settings.offline {
                throw HubError(.notCached, repo.id + "/" + f, "not in the cache and HF_HUB_OFFLINE is set",
                               advice: "download it once with the network on (unset HF_HUB_OFFLINE)")
            }
            try await download(repo, commit: commit, path: f)
        }
        try cache.setReference(repo, commit: commit)
        return snapshot
    }

    /// What a HEAD of the file's resolve URL says.
    struct FileMetadata { var etag: String; var size: Int64?; var location: String }

    func metadata(_ repo: HubRepoID, commit: String, path: String) async throws -> FileMetadata {
        let url = settings.endpoint + "/" + repo.id + "/resolve/" + commit + "/" + Self.escape(path, keepSlashes: true)
        let a = try await HTTP.send(method: .HEAD, url: url, headers: authorization + [("Accept-Encoding", "identity")], timeout: 60,
                                    policy: policy, followRedirects: false,
                                    onRetry: { [notice] r, s in notice?("the Hub: \(r); trying again in \(Int(s.rounded())) s") })
        guard (200..<400).contains(a.status) else { throw failure(a, repo: repo, file: path) }
        guard var etag = a.header("X-Linked-Etag") ?? a.header("ETag") else {
            throw HubError(.other, repo.id + "/" + path, "the Hub gave the file no ETag", advice: "check HF_ENDPOINT (a Hub or a mirror of its API)")
        }
        if etag.hasPrefix("W/") { etag.removeFirst(2) }
        etag = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !etag.isEmpty, etag.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw HubError(.other, repo.id + "/" + path, "an ETag Finch cannot name a file by: \(etag)", advice: "check HF_ENDPOINT")
        }
        let size = (a.header("X-Linked-Size") ?? (a.status == 200 ? a.header("Content-Length") : nil)).flatMap { Int64($0) }
        var location = url
        if (300..<400).contains(a.status), let l = a.header("Location") {
            location = l.hasPrefix("http://") || l.hasPrefix("https://") ? l : settings.endpoint + (l.hasPrefix("/") ? "" : "/") + l
        }
        return FileMetadata(etag: etag, size: size, location: location)
    }

    func download(_ repo: HubRepoID, commit: String, path: String) async throws {
        let meta = try await metadata(repo, commit: commit, path: path)
        let blob = cache.blob(repo, etag: meta.etag)
        if !FileManager.default.fileExists(atPath: blob) {
            try HubCache.makeDirectory((blob as NSString).deletingLastPathComponent)
            let lockPath = cache.lockFile(repo, etag: meta.etag)
            try HubCache.makeDirectory((lockPath as NSString).deletingLastPathComponent)
            let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard lock >= 0 else { throw HubError.io(lockPath, "cannot open the lock file: \(String(cString: strerror(errno)))") }
            defer { close(lock) }
            while flock(lock, LOCK_EX) != 0 && errno == EINTR {}   // another process downloading the same blob: wait for it
            if !FileManager.default.fileExists(atPath: blob) {
                try await downloadBlob(repo, path: path, meta: meta, to: blob)
            }
        }
        try cache.link(repo, commit: commit, path: path, etag: meta.etag)
    }

    func downloadBlob(_ repo: HubRepoID, path: String, meta: FileMetadata, to blob: String) async throws {
        let partial = blob + ".incomplete"
        if !FileManager.default.fileExists(atPath: partial) { _ = FileManager.default.createFile(atPath: partial, contents: nil) }
        guard let handle = FileHandle(forUpdatingAtPath: partial) else { throw HubError.io(partial, "cannot open for writing") }
        defer { try? handle.close() }
        var hasher = SHA256()
        var hashed: Int64 = 0
        func restart() throws {
            try handle.truncate(atOffset: 0); hasher = SHA256(); hashed = 0
        }
        // What an earlier, stopped download left: hashed once, then resumed after.
        var have = Int64(try handle.seekToEnd())
        if have > 0 {
            try handle.seek(toOffset: 0)
            while hashed < have, let chunk = try handle.read(upToCount: 1 << 22), !chunk.isEmpty { hasher.update(data: chunk); hashed += Int64(chunk.count) }
            if let total = meta.size, have > total { try restart(); have = 0 } else { _ = try handle.seekToEnd() }
            if have > 0 { notice?("resuming \(repo.id)/\(path) at \(have) bytes") }
        }
        let sameHost = URL(string: meta.location)?.host == URL(string: settings.endpoint)?.host
        var attempt = 0
        while meta.size.map({ have < $0 }) ?? true {
            attempt += 1
            var request = HTTPClientRequest(url: meta.location)
            if sameHost { for (n, v) in authorization { request.headers.add(name: n, value: v) } }
            request.headers.add(name: "Accept-Encoding", value: "identity")
            if have > 0 { request.headers.add(name: "Range", value: "bytes=\(have)-") }
            do {
                let response = try await HTTP.client.execute(request, timeout: .hours(24))
                let status = Int(response.status.code)
                switch status {
                case 200: if have > 0 { try restart(); have = 0 }   // the server ignored Range: start again
                case 206:
                    let start = response.headers.first(name: "Content-Range").flatMap { r -> Int64? in
                        r.split(separator: " ").last?.split(separator: "-").first.flatMap { Int64($0) }
                    }
                    if start != have { try restart(); have = 0; throw NetError(url: meta.location, status: 206, "a range that does not start at \(have)", advice: "") }
                case 416 where meta.size == have: break
                default:
                    var body = try await response.body.collect(upTo: 1 << 16)
                    let answer = HTTPAnswer(status: status, headers: response.headers.map { ($0.name, $0.value) },
                                            body: body.readBytes(length: body.readableBytes) ?? [])
                    if RetryPolicy.retries(status: status) && attempt < policy.attempts {
                        throw NetError(url: meta.location, status: status, "HTTP \(status)", advice: "")
                    }
                    throw failure(answer, repo: repo, file: path)
                }
                let resumedAt = have
                var lastReport = Date.distantPast
                for try await buffer in response.body {
                    let bytes = Data(buffer.readableBytesView)
                    try handle.write(contentsOf: bytes)
                    hasher.update(data: bytes)
                    have += Int64(bytes.count); hashed = have
                    if Date().timeIntervalSince(lastReport) > 0.1 {
                        lastReport = Date()
                        progress?(HubProgress(repository: repo.id, file: path, bytes: have, total: meta.size, resumedAt: resumedAt, finished: false))
                    }
                }
                if meta.size == nil { break }
                if have < meta.size! { throw NetError(url: meta.location, "the connection ended at \(have) of \(meta.size!) bytes", advice: "") }
            } catch let e as HubError {
                throw e
            } catch {
                guard attempt < policy.attempts else {
                    throw HubError(.other, repo.id + "/" + path, "the download failed after \(attempt) tries at \(have) bytes: \(error)",
                                   advice: "run the command again: it resumes from \(have) bytes (\(partial))")
                }
                let wait = policy.delay(after: attempt, retryAfter: nil)
                notice?("\(repo.id)/\(path): \(error); resuming at \(have) bytes in \(Int(wait.rounded())) s")
                try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
            }
        }
        progress?(HubProgress(repository: repo.id, file: path, bytes: have, total: meta.size, resumedAt: 0, finished: true))
        if let total = meta.size, have != total {
            try restart()
            throw HubError(.corrupt, repo.id + "/" + path, "\(have) bytes downloaded where the Hub said \(total)", advice: "run the command again")
        }
        // The ETag names the content: an LFS file's SHA-256, or a small file's git blob id.
        let got: String?
        if meta.etag.count == 64 {
            got = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        } else if meta.etag.count == 40 {
            try handle.seek(toOffset: 0)
            var sha1 = Insecure.SHA1()
            sha1.update(data: Data("blob \(have)\u{0}".utf8))
            while let chunk = try handle.read(upToCount: 1 << 22), !chunk.isEmpty { sha1.update(data: chunk) }
            got = sha1.finalize().map { String(format: "%02x", $0) }.joined()
        } else {
            got = nil
        }
        if let got, got != meta.etag.lowercased() {
            try? FileManager.default.removeItem(atPath: partial)
            throw HubError(.corrupt, repo.id + "/" + path, "the downloaded bytes hash to \(got), not to the ETag \(meta.etag): refused (deleted)",
                           advice: "run the command again; if it happens again the mirror or a proxy alters the file")
        }
        try handle.synchronize()
        guard rename(partial, blob) == 0 else { throw HubError.io(blob, "cannot put the file in place: \(String(cString: strerror(errno)))") }
        let dir = open((blob as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}
