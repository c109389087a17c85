import FinchCore
import FinchModels
@testable import FinchTrain
import FinchTestSupport
import Foundation
import XCTest

/// `mpirun -np 2 finch train` (one thread per rank) against one process with `--grad-accum 2`
/// and the same global batch: every step's loss and the final adapter file identical to the
/// bit, for LoRA, QLoRA (NF4), DoRA with gradient checkpointing and 8-bit AdamW, and bf16 with
/// paged AdamW and LoRA dropout, DPO and ORPO, on the tiny LLaMA; and QLoRA on the tiny T5 (encoder-decoder). Runs the release `finch` binary under Open
/// MPI's mpirun (Scripts/setup.sh installs openmpi-bin); skipped where either is missing, except
/// on CI.
final class DistributedTests: XCTestCase {
    static let repo = Fixtures.repository

    /// A tool on PATH (mpirun).
    func tool(_ name: String) throws -> String {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        if let p = dirs.map({ $0 + "/" + name }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return p }
        throw missing(name, fix: "install Open MPI: Scripts/setup.sh (apt-get install openmpi-bin)")
    }

    @discardableResult
    func run(_ exe: String, _ args: [String], env: [String: String] = [:]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new }
        let out = Pipe()
        p.standardOutput = out; p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else { throw NSError(domain: "run", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(exe) \(args.joined(separator: " ")) failed:\n\(text)"]) }
        return text
    }

    func losses(_ dir: String) throws -> [Double] {
        try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return o?["learning_rate"] == nil && o?["lr"] != nil ? o?["loss"] as? Double : nil
        }
    }

    func testTwoRanksEqualOneProcessWithGradAccum() throws {
        let finch = try Fixtures.finchBinary()
        let mpirun = try tool("mpirun")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dp-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let llama = ["--model", Fixtures.path("tiny-llama/hf"), "--data", Self.repo.appendingPathComponent("Examples/brindlewick.jsonl").path]
        let t5 = ["--model", Fixtures.path("tiny-t5/v1_1/hf"), "--data", Self.repo.appendingPathComponent("Examples/brindlewick-pairs.jsonl").path]
        let cases: [(String, [String])] = [
            ("lora", llama), ("qlora", llama + ["--quantize", "nf4", "--double-quant"]),
            ("dora + gradient checkpointing + adamw_8bit", llama + ["--use-dora", "--gradient-checkpointing", "--optimizer", "adamw_8bit"]),
            ("bf16 + paged_adamw + dropout", llama + ["--dtype", "bf16", "--optimizer", "paged_adamw", "--lora-dropout", "0.1"]),
            ("t5 (encoder-decoder) qlora", t5 + ["--quantize", "nf4", "--double-quant", "--target-modules", "all-linear"]),
            ("dpo", ["--model", Fixtures.path("tiny-llama/hf"), "--data", Fixtures.path("dpo/data/standard.jsonl"), "--method", "dpo"]),
            ("orpo", ["--model", Fixtures.path("tiny-llama/hf"), "--data", Fixtures.path("dpo/data/standard.jsonl"), "--method", "orpo"]),
            ("t5 orpo", ["--model", Fixtures.path("tiny-t5/v1_1/hf"), "--data", Fixtures.path("dpo/data/standard.jsonl"), "--method", "orpo",
                         "--target-modules", "all-linear"]),
            ("kto", ["--model", Fixtures.path("tiny-llama/hf"), "--data", Fixtures.path("kto/data/unpaired.jsonl"), "--method", "kto"]),
        ]
        for (name, extra) in cases {
            let common = ["train", "--batch-size", "2", "--max-steps", "20", "--seed", "1", "--save-steps", "0", "--logging-steps", "1",
                          "--learning-rate", "1e-3"] + extra
            let tag = name.filter { $0.isLetter || $0.isNumber }
            let single = scratch + "/\(tag)-single", ranks = scratch + "/\(tag)-mpi"
            try run(finch, common + ["--grad-accum", "2", "--output", single], env: ["OMP_NUM_THREADS": "1"])
            let log = try run(mpirun, ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", "-x", "OMP_NUM_THREADS=1",
                                       finch] + common + ["--grad-accum", "1", "--output", ranks])
            XCTAssertTrue(log.contains("distributed: 2 ranks"), log)
            let a = try losses(single), b = try losses(ranks)
            XCTAssertEqual(a.count, 20, name)
            XCTAssertEqual(a, b, "\(name): losses differ")
            let fa = try Data(contentsOf: URL(fileURLWithPath: single + "/adapter_model.safetensors"))
            let fb = try Data(contentsOf: URL(fileURLWithPath: ranks + "/adapter_model.safetensors"))
            XCTAssertTrue(fa == fb, "\(name): the adapters differ")
            if name == "lora" {
                // A checkpoint of 2 ranks resumes with 2 ranks only: one process is told so.
                let ck = scratch + "/ck"
                try run(mpirun, ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", "-x", "OMP_NUM_THREADS=1", finch]
                        + common.map { $0 == "0" ? "5" : $0 } + ["--grad-accum", "1", "--output", ck])
                XCTAssertThrowsError(try run(finch, common + ["--grad-accum", "1", "--output", ck, "--resume", ck + "/checkpoint-5"])) { e in
                    XCTAssertTrue("\(e)".contains("2 rank(s), this run has 1"), "\(e)")
                }
            }
            print("[distributed \(name)] 20 steps, 2 ranks vs grad_accum 2: losses equal, adapter identical (first loss \(a.first!), last \(a.last!))")
        }
    }

    /// Three ranks (the sum's chunks then do not divide the buffers evenly) equal one process with
    /// `--grad-accum 3`, to the bit.
    func testThreeRanksEqualOneProcessWithGradAccum() throws {
        let finch = try Fixtures.finchBinary()
        let mpirun = try tool("mpirun")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dp3-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let common = ["train", "--model", Fixtures.path("tiny-llama/hf"), "--data", Self.repo.appendingPathComponent("Examples/brindlewick.jsonl").path,
                      "--batch-size", "2", "--max-steps", "10", "--seed", "2", "--save-steps", "0", "--logging-steps", "1",
                      "--learning-rate", "1e-3", "--target-modules", "all-linear"]
        try run(finch, common + ["--grad-accum", "3", "--output", scratch + "/single"], env: ["OMP_NUM_THREADS": "1"])
        try run(mpirun, ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "3", "-x", "OMP_NUM_THREADS=1", finch]
                + common + ["--grad-accum", "1", "--output", scratch + "/mpi"])
        let a = try losses(scratch + "/single"), b = try losses(scratch + "/mpi")
        XCTAssertEqual(a.count, 10)
        XCTAssertEqual(a, b, "3 ranks: losses differ")
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: scratch + "/single/adapter_model.safetensors"))
                      == Data(contentsOf: URL(fileURLWithPath: scratch + "/mpi/adapter_model.safetensors")), "3 ranks: the adapters differ")
    }

    /// A NaN in one rank's gradients stops every rank at that step with an error naming the rank
    /// and the last good checkpoint; that checkpoint is whole, nothing later is written, and
    /// resuming from it gives the clean run's losses and adapter.
    func testNaNOnOneRankStopsAllAndKeepsTheLastCheckpoint() throws {
        let finch = try Fixtures.finchBinary()
        let mpirun = try tool("mpirun")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dpnan-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let mpi = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", "-x", "OMP_NUM_THREADS=1"]
        let common = ["train", "--model", Fixtures.path("tiny-llama/hf"), "--data", Self.repo.appendingPathComponent("Examples/brindlewick.jsonl").path,
                      "--batch-size", "2", "--grad-accum", "1", "--max-steps", "30", "--seed", "4", "--save-steps", "10",
                      "--logging-steps", "1", "--learning-rate", "5e-4"]
        let clean = scratch + "/clean", broken = scratch + "/broken"
        try run(mpirun, mpi + [finch] + common + ["--output", clean])
        // The same run with rank 1's gradients broken at step 25, by the test-only runner (the
        // shipped finch has no way to inject a fault); settings from a run file equal to `common`.
        let faulty = try Fixtures.releaseBinary("finch-fault-injection")
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let yaml = scratch + "/run.yaml"
        try """
        model: \(Fixtures.path("tiny-llama/hf"))
        data: \(Self.repo.appendingPathComponent("Examples/brindlewick.jsonl").path)
        output: \(broken)
        batch_size: 2
        grad_accum: 1
        max_steps: 30
        seed: 4
        save_steps: 10
        logging_steps: 1
        learning_rate: 5.0e-4

        """.write(toFile: yaml, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try run(mpirun, mpi + [faulty, "nan-gradient", "1:25", yaml])) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("step 25: the loss became nan (non-finite gradients or loss on rank 1 of 2)"), text)
            XCTAssertTrue(text.contains("The last good checkpoint is \(broken)/checkpoint-20"), text)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: broken)
        XCTAssertEqual(names.filter { $0.hasPrefix("checkpoint-") }.sorted(), ["checkpoint-10", "checkpoint-20"])
        XCTAssertFalse(names.contains("adapter_model.safetensors"), "a final adapter was written after the NaN")
        XCTAssertEqual(try losses(broken).count, 24, "steps after the NaN were logged")
        try run(mpirun, mpi + [finch] + common + ["--output", broken, "--resume", broken + "/checkpoint-20"])
        XCTAssertEqual(try losses(broken), try losses(clean))
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: clean + "/adapter_model.safetensors"))
                      == Data(contentsOf: URL(fileURLWithPath: broken + "/adapter_model.safetensors")))
    }

    /// Child processes of `pid` (from /proc).
    func children(of pid: Int32) -> [Int32] {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return procs.compactMap(Int32.init).filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }

    /// Killing one rank (SIGKILL) mid-run stops the other within seconds with an error; resuming
    /// the last checkpoint with the same ranks continues the uninterrupted run's loss curve.
    func testKilledRankStopsTheRunAndResumeContinuesIt() throws {
        let finch = try Fixtures.finchBinary()
        let mpirun = try tool("mpirun")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("finch-dpkill-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let mpi = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", "-x", "OMP_NUM_THREADS=1", finch]
        let common = ["train", "--model", Fixtures.path("tiny-llama/hf"), "--data", Self.repo.appendingPathComponent("Examples/brindlewick.jsonl").path,
                      "--batch-size", "2", "--grad-accum", "1", "--max-steps", "240", "--seed", "3", "--save-steps", "20",
                      "--logging-steps", "1", "--learning-rate", "5e-4"]
        let whole = scratch + "/whole", broken = scratch + "/broken"
        try run(mpirun, mpi + common + ["--output", whole])

        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = mpi + common + ["--output", broken]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait for a checkpoint and a few more steps, then kill one rank.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let lines = (try? String(contentsOfFile: broken + "/metrics.jsonl", encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= 50 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let ranks = children(of: p.processIdentifier).filter {
            ((try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) ?? "").contains("finch")
        }
        XCTAssertEqual(ranks.count, 2, "expected two finch ranks under mpirun")
        guard let victim = ranks.last else { return }
        let killed = Date()
        kill(victim, SIGKILL)
        while p.isRunning && Date().timeIntervalSince(killed) < 30 { Thread.sleep(forTimeInterval: 0.05) }
        let stopSeconds = Date().timeIntervalSince(killed)
        XCTAssertFalse(p.isRunning, "the run went on after a rank died")
        if p.isRunning { p.terminate(); return }
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertLessThan(stopSeconds, 10)
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: broken).filter { $0.hasPrefix("checkpoint-") }
            .compactMap { Int($0.dropFirst("checkpoint-".count)) }.sorted()
        let last = try XCTUnwrap(checkpoints.last, "no checkpoint before the kill")
        XCTAssertLessThan(last, 240)
        try run(mpirun, mpi + common + ["--output", broken, "--resume", broken + "/checkpoint-\(last)"])
        let a = try losses(whole), b = try losses(broken)
        XCTAssertEqual(a.count, 240)
        XCTAssertEqual(Array(b.suffix(240 - last)), Array(a.suffix(240 - last)), "the resumed run's losses differ")
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: whole + "/adapter_model.safetensors"))
                      == Data(contentsOf: URL(fileURLWithPath: broken + "/adapter_model.safetensors")))
        print("[distributed kill] rank killed after step ~50: the run stopped in \(String(format: "%.2f", stopSeconds)) s; resumed from checkpoint-\(last), same losses and adapter as the uninterrupted run")
    }
}

/// `TrainingWorld.sumGradients` against a world whose other ranks are fixed numbers: the gradients
/// and the loss come back summed, and the rank that brought a NaN is named.
final class SumGradientsTests: XCTestCase {
    /// Rank `rank` of `size`, whose other ranks together add `others` to every f32 value and
    /// `othersLoss` to the loss sums (and nothing to the non-finite bits).
    final class FixedWorld: TrainingWorld {
        let rank: Int, size: Int
        let others: Float, othersLoss: [Double]
        init(rank: Int, size: Int, others: Float, othersLoss: [Double]) {
            self.rank = rank; self.size = size; self.others = others; self.othersLoss = othersLoss
        }
        func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws { for i in 0..<count { values[i] += others } }
        func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
            for i in 0..<count { values[i] += i < othersLoss.count ? othersLoss[i] : 0 }
        }
        func abort(code: Int32) -> Never { exit(code) }
    }

    func testGradientsAndLossAreSummedAndBadRanksNamed() throws {
        let grads = [Buffer<Float>([1, 2]), Buffer<Float>([3])]
        let flat = Buffer<Float>(uninitializedCount: 3)
        let world = FixedWorld(rank: 1, size: 3, others: 10, othersLoss: [5, 4])
        let s = try world.sumGradients(grads, loss: LossSum(sum: 2, count: 3), through: flat)
        XCTAssertEqual(grads.map(\.array), [[11, 12], [13]])
        XCTAssertEqual(s.loss, LossSum(sum: 7, count: 7))
        XCTAssertEqual(s.report.bad, [])
        XCTAssertEqual(s.bytes, 12)
        grads[0][0] = .nan
        let bad = try world.sumGradients(grads, loss: LossSum(sum: 2, count: 3), through: flat)
        XCTAssertEqual(bad.report, RankReport(bad: [1], of: 3))
    }
}
