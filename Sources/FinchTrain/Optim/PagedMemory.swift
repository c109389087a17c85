import FinchCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Zeroed buffers backed by a file mapping (`mmap(MAP_SHARED)` of an unlinked temporary file),
/// for optimizer state that the OS may write out and evict under memory pressure instead of
/// swapping or failing: CPU counterpart of bitsandbytes' paged (CUDA unified memory) optimizers.
/// The values are ordinary floats; only where the pages live differs. The file is unlinked as
/// soon as it is mapped, so nothing is left behind when the process ends.
public enum PagedMemory {
    /// Where the backing files go: `$FINCH_PAGED_DIR`, else the system temporary directory.
    public static var directory: String {
        ProcessInfo.processInfo.environment["FINCH_PAGED_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? NSTemporaryDirectory()
    }

    /// `count` zeroed elements in a fresh file mapping.
    /// - Throws: ``TrainError/io(path:reason:)`` when the file cannot be created, sized or mapped.
    public static func buffer<T: BitwiseCopyable>(count: Int, in dir: String = directory) throws -> Buffer<T> {
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        let template = (dir as NSString).appendingPathComponent("finch-paged-XXXXXX")
        var path = Array(template.utf8CString)
        let fd = path.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let name = path.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard fd >= 0 else { throw TrainError.io(path: template, reason: "cannot create a paged-memory file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        unlink(name)
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            throw TrainError.io(path: name, reason: "cannot size a paged-memory file to \(bytes) bytes: \(String(cString: strerror(errno)))")
        }
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw TrainError.io(path: name, reason: "cannot map a paged-memory file: \(String(cString: strerror(errno)))")
        }
        let address = UInt(bitPattern: p)
        return Buffer(external: p.bindMemory(to: T.self, capacity: max(count, 1)), count: count) {
            _ = munmap(UnsafeMutableRawPointer(bitPattern: address), bytes)
        }
    }
}
