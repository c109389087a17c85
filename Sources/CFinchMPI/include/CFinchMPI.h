#ifndef CFINCHMPI_H
#define CFINCHMPI_H
#include <stdint.h>

/// A small shim over Open MPI, loaded at run time (dlopen of libmpi.so.40): a process that is
/// not launched by mpirun, or a machine without Open MPI, never needs the library. Open MPI's
/// handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of exported objects, found by
/// dlsym. Every function returns 0 on success, else an error code (MPI's, or -1 when the
/// library or a symbol is missing); `finch_mpi_error` describes the last failure.

/// Loads libmpi and calls MPI_Init; writes this process's rank and the world size.
int finch_mpi_init(int *rank, int *size);
const char *finch_mpi_error(void);
/// In-place sum over all ranks of `count` floats, in a fixed order: in buckets, rank r receives
/// every rank's r-th chunk (MPI_Alltoall), adds them in rank order 0, 1, ..., and the sums are
/// gathered by all (MPI_Allgather): every rank gets the same bits, with a ring's traffic.
int finch_mpi_allreduce_sum_f32(float *buf, int64_t count);
int finch_mpi_allreduce_sum_f64(double *buf, int64_t count);
/// Rank `root`'s `count` bytes into every rank's `buf`.
int finch_mpi_bcast(void *buf, int64_t count, int root);
int finch_mpi_barrier(void);
/// Ends every rank of the job with `code` (MPI_Abort).
void finch_mpi_abort(int code);
int finch_mpi_finalize(void);

#endif
