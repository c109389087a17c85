import Glibc
import FinchFormats
import FinchModels
import FinchTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// A raw TCP connection to a test server on loopback, for requests no HTTP client sends. Reads
/// block a thread of their own, not one of Swift concurrency's (the server's handlers need those).
final class RawConnection: @unchecked Sendable {
    private let fd: Int32
    private var closed = false

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        // Reads wake up every 200 ms to check their deadline.
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { Glibc.close(fd); throw Failure(description: "connect to 127.0.0.1:\(port): errno \(errno)") }
    }

    deinit { close() }

    /// Sends all of `text`; false if the connection failed.
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Reads until `done` holds for what arrived, the server closes the connection, or `seconds` pass.
    func read(until done: @escaping @Sendable (String) -> Bool = { _ in false }, seconds: Double = 30) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { [self] in
                let deadline = Date().addingTimeInterval(seconds)
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65536)
                while Date() < deadline, !done(String(decoding: received, as: UTF8.self)) {
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n > 0 { received += buffer[0..<n]; continue }
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
                    break   // closed (0) or reset
                }
                continuation.resume(returning: String(decoding: received, as: UTF8.self))
            }
        }
    }

    /// Whether `text` holds a response's head and the whole body its Content-Length announces.
    @Sendable static func isWholeResponse(_ text: String) -> Bool {
        guard let split = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<split.lowerBound].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else { return false }
        return text[split.upperBound...].utf8.count >= length
    }

    /// Ends what this side sends (the server reads the end of the stream); reading goes on.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}
