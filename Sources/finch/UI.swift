import ArgumentParser
import FinchServe
import FinchTrain
import Foundation
import Logging

/// `finch ui RUN_DIR`: the live training page of a run directory, running or finished.
struct UI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Serve the training page of a run directory (the one `finch train --ui` shows) on 127.0.0.1.",
        discussion: "The page reads the directory's files (progress.json, metrics.jsonl, train_config.json, samples.jsonl) as they are: a finished run shows as it ended, a running one (trained by another process) follows it. Ctrl-C stops the server.")

    @Argument(help: "A run directory (finch train --output).")
    var runDirectory: String
    @Option(name: .long, help: "The port (default 6070).")
    var port = 6070

    func validate() throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: runDirectory + "/metrics.jsonl") || fm.fileExists(atPath: runDirectory + "/" + RunProgress.fileName) else {
            throw ValidationError("\(runDirectory) is not a run directory: it has no metrics.jsonl or progress.json (give a finch train --output folder)")
        }
    }

    func run() async throws {
        var logger = Logger(label: "finch.ui")
        logger.logLevel = .error
        let app = TrainingMonitor.application(runDirectory: runDirectory, port: port, logger: logger)
        stderrPrint("training page of \(runDirectory): http://127.0.0.1:\(port)/ (Ctrl-C to stop)")
        try await app.runService()
    }
}
