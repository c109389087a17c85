import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Hugging Face cache as huggingface_hub lays it out, read and written the same way, so files
/// Python downloaded are used as they are and files Finch downloads serve Python:
///
///     <root>/models--ORG--NAME/
///         blobs/<etag>                  the files' bytes, named by their ETag (an LFS file's SHA-256,
///                                       else its git blob id); <etag>.incomplete while downloading
///         refs/<revision>               the commit a branch or tag pointed to when last resolved
///         snapshots/<commit>/<path>     relative symlinks to ../../blobs/<etag>
///     <root>/.locks/models--ORG--NAME/<etag>.lock   held (flock) while a blob is downloaded
public struct HubCache: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public func repository(_ repo: HubRepoID) -> String { (root as NSString).appendingPathComponent(repo.cacheFolder) }
    public func snapshot(_ repo: HubRepoID, commit: String) -> String { repository(repo) + "/snapshots/" + commit }
    public func blob(_ repo: HubRepoID, etag: String) -> String { repository(repo) + "/blobs/" + etag }
    func lockFile(_ repo: HubRepoID, etag: String) -> String { root + "/.locks/" + repo.cacheFolder + "/" + etag + ".lock" }

    /// The commit of `repo`'s revision in the cache: the revision itself when it is a commit hash, else
    /// what refs/<revision> holds; nil when neither is there.
    public func commit(_ repo: HubRepoID) -> String? {
        if repo.isCommit { return repo.revision }
        let ref = repository(repo) + "/refs/" + repo.revision
        guard let text = try? String(contentsOfFile: ref, encoding: .utf8) else { return nil }
        let c = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return HubRepoID.isCommitHash(c) ? c : nil
    }

    /// The files of a cached snapshot whose bytes are there (relative paths, sorted); a link to a blob
    /// that is missing does not count.
    public func files(_ repo: HubRepoID, commit: String) -> [String] {
        let dir = snapshot(repo, commit: commit)
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
        }
        return out.sorted()
    }

    /// Points snapshots/<commit>/<path> at blobs/<etag> (a relative link, put in place by rename).
    public func link(_ repo: HubRepoID, commit: String, path: String, etag: String) throws {
        let target = snapshot(repo, commit: commit) + "/" + path
        let dir = (target as NSString).deletingLastPathComponent
        try Self.makeDirectory(dir)
        let depth = path.split(separator: "/").count - 1
        let relative = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        let tmp = dir + "/.\((path as NSString).lastPathComponent).link-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard symlink(relative, tmp) == 0 else { throw HubError.io(target, "cannot make a link: \(String(cString: strerror(errno)))") }
        guard rename(tmp, target) == 0 else {
            let why = String(cString: strerror(errno)); unlink(tmp)
            throw HubError.io(target, "cannot put the link in place: \(why)")
        }
    }

    /// Writes refs/<revision> = commit (atomically), as huggingface_hub does after resolving a branch or tag.
    public func setReference(_ repo: HubRepoID, commit: String) throws {
        guard !repo.isCommit else { return }
        let ref = repository(repo) + "/refs/" + repo.revision
        try Self.makeDirectory((ref as NSString).deletingLastPathComponent)
        if (try? String(contentsOfFile: ref, encoding: .utf8)) == commit { return }
        do { try commit.write(toFile: ref, atomically: true, encoding: .utf8) } catch {
            throw HubError.io(ref, "cannot write the reference: \(error.localizedDescription)")
        }
    }

    static func makeDirectory(_ dir: String) throws {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw HubError.io(dir, "cannot create the folder: \(error.localizedDescription); set HF_HUB_CACHE (or HF_HOME) to a writable place")
        }
    }
}
