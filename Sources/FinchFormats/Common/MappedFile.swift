#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory (`mmap`), unmapped when the object goes away.
///
/// Pages are loaded lazily by the OS, so opening a multi-gigabyte checkpoint costs nothing
/// until its bytes are touched. Pointers obtained from ``bytes`` stay valid for the lifetime
/// of this object only. Mapping is private and read-only: the file is never modified.
public final class MappedFile: @unchecked Sendable {
    /// Path the file was opened with.
    public let path: String
    /// The file's bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer

    /// Number of bytes in the file.
    public var count: Int { bytes.count }

    /// Maps `path` read-only. Throws ``FormatError/io(path:message:)`` if it cannot be opened or mapped.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw FormatError.io(path: path, message: "cannot open: \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw FormatError.io(path: path, message: "cannot stat: \(errnoString())") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw FormatError.io(path: path, message: "is a directory, not a file") }
        let size = Int(st.st_size)
        if size <= 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw FormatError.io(path: path, message: "cannot mmap \(size) bytes: \(errnoString())")
        }
        bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(p!), count: size)
    }

    deinit {
        if let base = bytes.baseAddress, bytes.count > 0 {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    /// The bytes `offset ..< offset + count`, or `nil` if that range is not entirely inside the file
    /// (checked without overflow).
    public func slice(offset: Int, count: Int) -> UnsafeRawBufferPointer? {
        guard let range = checkedRange(offset: offset, count: count, limit: bytes.count) else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// Drops the pages of `region` (a slice of ``bytes``) from this process's memory once they have
    /// been read: they stay in the page cache and are read again if touched, but no longer count
    /// in the resident set, so converting a checkpoint tensor by tensor keeps at most one source
    /// tensor resident. The file is mapped read-only and private, so nothing is lost.
    public func release(_ region: UnsafeRawBufferPointer) {
        #if canImport(Glibc) || canImport(Darwin)
        guard let base = bytes.baseAddress, let r = region.baseAddress, region.count > 0,
              r >= base, r + region.count <= base + bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (r - base) / page * page
        let end = min(bytes.count, ((r - base) + region.count + page - 1) / page * page)
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
        #endif
    }

    /// Hints the OS that `range` will be read soon (read-ahead); a no-op where unsupported.
    public func willNeed(_ range: Range<Int>) {
        #if canImport(Glibc) || canImport(Darwin)
        guard let base = bytes.baseAddress, range.lowerBound >= 0, range.upperBound <= bytes.count,
              !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), range.upperBound - start, MADV_WILLNEED)
        #endif
    }
}

/// `offset ..< offset+count` if it lies within `0 ..< limit`, computed without overflow.
@inline(__always)
func checkedRange(offset: Int, count: Int, limit: Int) -> Range<Int>? {
    guard offset >= 0, count >= 0, offset <= limit, count <= limit - offset else { return nil }
    return offset..<(offset + count)
}

/// `a + b`, or `Int.max` on overflow (for error messages about absurd offsets).
@inline(__always)
func saturatingAdd(_ a: Int, _ b: Int) -> Int {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? Int.max : r
}

/// Product of `values`, or `nil` on overflow or a negative value.
func checkedProduct(_ values: [Int]) -> Int? {
    var p = 1
    for v in values {
        guard v >= 0 else { return nil }
        let (r, o) = p.multipliedReportingOverflow(by: v)
        if o { return nil }
        p = r
    }
    return p
}

/// The current `errno` as text.
func errnoString() -> String {
    String(cString: strerror(errno))
}
