import CFinchMPI
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
