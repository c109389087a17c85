import FinchModels
import FinchNet
import Foundation

/// Shows the Hub's downloads on stderr: on a terminal a line redrawn in place (file, percent, MiB,
/// speed, ETA), else one line per finished file; and the client's notices (retries, resumes, the cache
/// used while the Hub cannot be reached).
enum HubTerminal {
    final class State: @unchecked Sendable {
        let lock = NSLock()
        var started: [String: (Date, Int64)] = [:]
    }

    static func install() {
        let tty = isatty(2) != 0, state = State()
        HubModel.client.notice = { stderrPrint("hub: " + $0) }
        HubModel.client.progress = { p in
            let key = p.repository + "/" + p.file
            let (start, from) = state.lock.withLock { () -> (Date, Int64) in
                if let s = state.started[key] { return s }
                let s = (Date(), p.resumedAt); state.started[key] = s; return s
            }
            let seconds = max(Date().timeIntervalSince(start), 1e-3)
            let rate = Double(p.bytes - from) / seconds
            let mib = { (b: Int64) in String(format: "%.1f", Double(b) / 1_048_576) }
            var line = "downloading \(key): \(mib(p.bytes))"
            if let total = p.total, total > 0 {
                line += String(format: "/%@ MiB %3.0f%%", mib(total), 100 * Double(p.bytes) / Double(total))
                if !p.finished, rate > 0 { line += String(format: ", ETA %.0f s", Double(total - p.bytes) / rate) }
            } else {
                line += " MiB"
            }
            line += String(format: ", %.1f MiB/s", rate / 1_048_576)
            if p.finished {
                state.lock.withLock { _ = state.started.removeValue(forKey: key) }
                FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line + (p.resumedAt > 0 ? " (resumed)" : "") + "\n").utf8))
            } else if tty {
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            }
        }
    }
}
