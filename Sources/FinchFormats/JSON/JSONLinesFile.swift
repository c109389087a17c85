import Foundation

/// An append-only JSON-lines file that survives being stopped mid-write: opening it cuts off a
/// last line that a stopped writer left unfinished (so the next append starts a fresh line), each
/// ``append(_:)`` writes whole lines and syncs them to disk before returning, and the lines
/// already there are read back on demand. Used for answers (`finch generate --output`), human
/// ratings and the server's conversation log. Thread-safe.
public final class JSONLinesFile: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    /// Bytes cut off at open: a last line that was never finished.
    public let cutBytes: Int

    /// Opens `path` for appending, creating it if needed, and cuts off an unfinished last line.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FormatError.io(path: path, message: "cannot open for appending (\(String(cString: strerror(errno))))") }
        self.fd = fd
        do {
            cutBytes = try Self.cutUnfinishedLine(fd: fd, path: path)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Finds the last newline and truncates what follows it (the whole file when it has none).
    private static func cutUnfinishedLine(fd: Int32, path: String) throws -> Int {
        let size = Int(lseek(fd, 0, SEEK_END))
        guard size > 0 else { return 0 }
        var end = size
        var buffer = [UInt8](repeating: 0, count: 4096)
        while end > 0 {
            let start = max(0, end - buffer.count)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, end - start, off_t(start)) }
            guard n == end - start else { throw FormatError.io(path: path, message: "cannot read (\(String(cString: strerror(errno))))") }
            if let i = buffer[0..<n].lastIndex(of: 0x0A) {
                let keep = start + i + 1
                if keep < size { try truncateTo(keep, fd: fd, path: path) }
                return size - keep
            }
            end = start
        }
        try truncateTo(0, fd: fd, path: path)
        return size
    }

    private static func truncateTo(_ length: Int, fd: Int32, path: String) throws {
        guard ftruncate(fd, off_t(length)) == 0, fsync(fd) == 0 else {
            throw FormatError.io(path: path, message: "cannot cut off its unfinished last line (\(String(cString: strerror(errno))))")
        }
    }

    /// The lines in the file now, parsed, with their 1-based line numbers. A line that is not
    /// JSON is an error naming `path:line`.
    public func values() throws -> [(line: Int, value: JSONValue)] {
        lock.lock(); defer { lock.unlock() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError.io(path: path, message: "cannot read")
        }
        var out: [(line: Int, value: JSONValue)] = []
        for (n, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            do {
                out.append((n + 1, try JSONParser.parse(Array(line))))
            } catch {
                throw FormatError.invalidInput(path: "\(path):\(n + 1)",
                    reason: "not a JSON line (\(error)); the file was edited or written by another tool: move it aside to start over")
            }
        }
        return out
    }

    /// Appends one line per value (compact JSON) and syncs the file before returning.
    public func append(_ values: [JSONValue]) throws {
        guard !values.isEmpty else { return }
        let bytes = Array(values.map { $0.serialized() + "\n" }.joined().utf8)
        lock.lock(); defer { lock.unlock() }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FormatError.io(path: path, message: "cannot append (\(String(cString: strerror(errno))))") }
            done += n
        }
        guard fsync(fd) == 0 else { throw FormatError.io(path: path, message: "cannot sync to disk (\(String(cString: strerror(errno))))") }
    }

    /// Appends one line.
    public func append(_ value: JSONValue) throws { try append([value]) }
}
