import FinchCore
@_spi(Testing) import FinchTrain
import Foundation

/// Test-only runner: `finch train --config RUN.yaml` with one fault injected, so that the tests of
/// the distributed stop can break one rank's gradients. The shipped `finch` has no such switch.
///   finch-fault-injection nan-gradient RANK:STEP RUN.yaml     (under mpirun, or alone as rank 0)
/// Rank RANK turns its first gradient value into NaN at optimizer step STEP.
let args = CommandLine.arguments
guard args.count == 4, args[1] == "nan-gradient",
      case let p = args[2].split(separator: ":").compactMap({ Int($0) }), p.count == 2 else {
    FileHandle.standardError.write(Data("usage: finch-fault-injection nan-gradient RANK:STEP RUN.yaml\n".utf8))
    exit(2)
}
let (faultRank, faultStep) = (p[0], p[1])
let world: MPIWorld? = MPIWorld.launchedByMPIRun ? try MPIWorld.start() : nil
do {
    let config = try TrainingConfig.load(yamlAt: args[3])
    guard let out = config.output else { throw SettingError.missing(key: "output", advice: "is required in \(args[3])") }
    let run = try TrainingRun.prepare(config: config)
    let rank = world?.rank ?? 0
    let trainer = try run.trainer(runDirectory: rank == 0 ? out : nil, world: (world?.size ?? 1) > 1 ? world : nil)
    trainer.afterGradients = { step, rank, grads in
        if rank == faultRank, step == faultStep, let g = grads.first, g.count > 0 { g[0] = .nan }
    }
    _ = try trainer.train(resumeFrom: nil) { _ in }
    world?.finish()
} catch {
    FileHandle.standardError.write(Data("rank \(world?.rank ?? 0) of \(world?.size ?? 1): \(error)\n".utf8))
    if let world, world.size > 1 { world.abort(code: 1) }
    exit(1)
}
