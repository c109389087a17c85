import FinchFormats
import FinchTrain
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The live training page (`finch train --ui`, `finch ui RUN_DIR`): a server on loopback whose page
/// follows a run directory. Everything it shows is read from the directory's files on each request
/// (progress.json, metrics.jsonl, train_config.json, samples.jsonl), so it follows a run from start
/// to end, survives a reload, and shows a finished run the same way.
public enum TrainingMonitor {
    /// `GET /`: the page. `GET /api/run?metrics_from=N&samples_from=M`: the run's progress and settings,
    /// and the metrics and sample lines from those indices on (with their totals, so a client that
    /// holds more lines than there are, after a resume cut metrics.jsonl, starts over).
    public static func router(runDirectory: String) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: TrainingPage.html)))
        }
        router.get("/api/run") { request, _ -> Response in
            let metricsFrom = request.uri.queryParameters.get("metrics_from", as: Int.self) ?? 0
            let samplesFrom = request.uri.queryParameters.get("samples_from", as: Int.self) ?? 0
            let body = snapshot(runDirectory: runDirectory, metricsFrom: max(0, metricsFrom), samplesFrom: max(0, samplesFrom))
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: body.serialized())))
        }
        return router
    }

    public static func application(runDirectory: String, host: String = "127.0.0.1", port: Int, logger: Logger) -> some ApplicationProtocol {
        Application(router: router(runDirectory: runDirectory),
                    configuration: .init(address: .hostname(host, port: port), serverName: "finch-train"), logger: logger)
    }

    /// Complete JSON lines of a file (a last line still being written is left for the next poll).
    static func lines(_ path: String) -> [JSONValue] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var out: [JSONValue] = []
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            if let v = try? JSONParser.parse(String(decoding: line, as: UTF8.self)) { out.append(v) }
        }
        return out
    }

    static func snapshot(runDirectory: String, metricsFrom: Int, samplesFrom: Int) -> JSONValue {
        func json(_ name: String) -> JSONValue {
            guard let data = FileManager.default.contents(atPath: (runDirectory as NSString).appendingPathComponent(name)),
                  let v = try? JSONParser.parse(String(decoding: data, as: UTF8.self)) else { return .null }
            return v
        }
        let metrics = lines((runDirectory as NSString).appendingPathComponent("metrics.jsonl"))
        let samples = lines((runDirectory as NSString).appendingPathComponent("samples.jsonl"))
        return .object([
            ("run", .string(URL(fileURLWithPath: runDirectory).standardizedFileURL.path)),
            ("progress", json(RunProgress.fileName)),
            ("settings", json("train_config.json")),
            ("metrics_total", .int(metrics.count)),
            ("metrics", .array(metricsFrom <= metrics.count ? Array(metrics[metricsFrom...]) : [])),
            ("samples_total", .int(samples.count)),
            ("samples", .array(samplesFrom <= samples.count ? Array(samples[samplesFrom...]) : [])),
        ])
    }
}
