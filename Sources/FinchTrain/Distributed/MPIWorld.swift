import CFinchMPI
import FinchCore
import FinchModels
import Foundation

/// The processes of one data-parallel run: this process's rank, how many there are, and the
/// sums the trainer needs across them.
public protocol TrainingWorld: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` on every rank by their sum over the ranks, added in rank order (so every
    /// rank holds the same bits).
    func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws
    /// Ends every process of the run (a rank that cannot go on must not leave the others waiting).
    func abort(code: Int32) -> Never
}

/// A step's gradients and loss after the sum across the ranks.
public struct RankSum: Sendable {
    /// The loss summed over every rank's micro-batches.
    public var loss: LossSum
    /// The ranks whose own loss or gradients were not finite before the sum (named by the error
    /// every rank raises after it, since the sum carries a NaN to all).
    public var report: RankReport
    /// Time in the two sums, and the gradient bytes each rank sent.
    public var seconds: Double
    public var bytes: Int
}

extension TrainingWorld {
    /// Replaces `grads` on every rank by their sum over the ranks (copied through `flat`, in
    /// parameter order, one call), and sums `loss` with a bit per rank that brought non-finite
    /// values (ranks ≥ 52 are counted, not named: a Double holds 52 bits exactly).
    public func sumGradients(_ grads: [Buffer<Float>], loss: LossSum, through flat: Buffer<Float>) throws -> RankSum {
        let bad = !loss.sum.isFinite || !GradientNorm.total(grads).isFinite
        let c0 = Date()
        var o = 0
        for g in grads { (flat.pointer + o).update(from: g.pointer, count: g.count); o += g.count }
        try sum(flat.pointer, count: flat.count)
        o = 0
        for g in grads { g.pointer.update(from: flat.pointer + o, count: g.count); o += g.count }
        var l = [loss.sum, Double(loss.count), bad && rank < 52 ? Double(1 << rank) : 0, bad ? 1 : 0]
        try sum(&l, count: l.count)
        let mask = UInt64(l[2])
        var badRanks = (0..<min(size, 52)).filter { mask >> UInt64($0) & 1 == 1 }
        if badRanks.count < Int(l[3]) { badRanks += Array(repeating: -1, count: Int(l[3]) - badRanks.count) }
        return RankSum(loss: LossSum(sum: l[0], count: Int(l[1])), report: RankReport(bad: badRanks, of: size),
                       seconds: Date().timeIntervalSince(c0), bytes: grads.reduce(0) { $0 + $1.byteCount })
    }
}

/// Errors of a distributed run.
public enum DistributedError: Error, CustomStringConvertible, Sendable {
    case unavailable(String)
    case communication(String)

    public var description: String {
        switch self {
        case .unavailable(let why): "distributed training is not available: \(why)"
        case .communication(let why): "distributed training: \(why)"
        }
    }
}

/// The Open MPI world (`mpirun -np N finch train …`), through a shim that loads libmpi at run
/// time: a plain `finch train` never needs the library.
public final class MPIWorld: TrainingWorld {
    public let rank: Int
    public let size: Int
    nonisolated(unsafe) private static var started: MPIWorld?

    /// Whether this process was started by Open MPI's mpirun (it sets OMPI_COMM_WORLD_SIZE).
    public static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    /// Joins the MPI world (once per process).
    public static func start() throws -> MPIWorld {
        if let s = started { return s }
        var r: Int32 = 0, n: Int32 = 0
        guard finch_mpi_init(&r, &n) == 0 else { throw DistributedError.unavailable(String(cString: finch_mpi_error())) }
        let w = MPIWorld(rank: Int(r), size: Int(n))
        started = w
        return w
    }

    private init(rank: Int, size: Int) { self.rank = rank; self.size = size }

    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        let rc = finch_mpi_allreduce_sum_f32(values, Int64(count))
        if rc != 0 { throw DistributedError.communication("summing gradients across ranks failed: \(String(cString: finch_mpi_error()))") }
    }

    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        let rc = finch_mpi_allreduce_sum_f64(values, Int64(count))
        if rc != 0 { throw DistributedError.communication("summing losses across ranks failed: \(String(cString: finch_mpi_error()))") }
    }

    public func abort(code: Int32) -> Never {
        finch_mpi_abort(code)
        exit(code)
    }

    /// Leaves the MPI world (at the end of the process).
    public func finish() { _ = finch_mpi_finalize() }
}
