import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A directory made to appear all at once: filled as a hidden temporary sibling (`.<name>.tmp-<tag>`),
/// its files and entries fsynced, then renamed into place, and the parent fsynced. A directory already
/// at the path is replaced: an empty one by rename(2) itself, a full one moved aside first
/// (`.<name>.old-<tag>`, one rename) and removed after, so a kill at any point leaves either the old
/// directory or the new one in view, never a half-written one. What a failure leaves is removed; what a
/// kill leaves is hidden and starts with `.<name>.`, so a caller can sweep it (checkpoints do).
///
/// Used by the Hugging Face export and by training checkpoints; single files go through ``AtomicFile``.
public enum AtomicDirectory {
    /// Runs `body` with the temporary directory's path, then publishes it at `directory`; returns what `body` returns.
    public static func write<T>(to directory: String, _ body: (String) throws -> T) throws -> T {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        let target = url.path, parent = url.deletingLastPathComponent().path, base = url.lastPathComponent
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw FormatError.io(path: parent, message: "cannot create the parent directory: \(error.localizedDescription)")
        }
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let tmp = parent + "/.\(base).tmp-\(tag)"
        do { try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false) } catch {
            throw FormatError.io(path: tmp, message: "cannot create a temporary directory: \(error.localizedDescription)")
        }
        var done = false
        defer { if !done { try? fm.removeItem(atPath: tmp) } }
        let result = try body(tmp)
        for f in (try? fm.contentsOfDirectory(atPath: tmp)) ?? [] { try sync(tmp + "/" + f) }
        try sync(tmp)
        var isDir: ObjCBool = false
        let contents = fm.fileExists(atPath: target, isDirectory: &isDir) && isDir.boolValue
            ? (try? fm.contentsOfDirectory(atPath: target)) ?? [] : []
        if contents.isEmpty {
            try rename(tmp, target)   // absent, or an empty directory that rename(2) replaces
        } else {
            let old = parent + "/.\(base).old-\(tag)"
            try rename(target, old)
            do { try rename(tmp, target) } catch {
                _ = posixRename(old, target)
                throw error
            }
            try? fm.removeItem(atPath: old)
        }
        done = true
        try? sync(parent)
        return result
    }

    private static func rename(_ from: String, _ to: String) throws {
        if posixRename(from, to) != 0 {
            throw FormatError.io(path: to, message: "cannot rename \(from) into place: \(errnoString())")
        }
    }

    /// fsync(2) of a file or directory.
    private static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError.io(path: path, message: "cannot open to flush: \(errnoString())") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw FormatError.io(path: path, message: "fsync failed: \(errnoString())") }
    }
}

/// rename(2).
private func posixRename(_ from: String, _ to: String) -> Int32 {
    #if canImport(Glibc)
    return Glibc.rename(from, to)
    #else
    return Darwin.rename(from, to)
    #endif
}
