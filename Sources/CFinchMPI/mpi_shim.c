#define _GNU_SOURCE
#include "CFinchMPI.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *handle;   // Open MPI's MPI_Comm / MPI_Datatype / MPI_Op are pointers to its objects
static int (*p_init)(int *, char ***);
static int (*p_finalize)(void);
static int (*p_rank)(handle, int *);
static int (*p_size)(handle, int *);
static int (*p_allgather)(const void *, int, handle, void *, int, handle, handle);
static int (*p_alltoall)(const void *, int, handle, void *, int, handle, handle);
static int (*p_bcast)(void *, int, handle, int, handle);
static int (*p_barrier)(handle);
static int (*p_abort)(handle, int);
static handle comm_world, dt_float, dt_double, dt_byte;
static int world = 1, me = 0;
static char last_error[512];

static int fail(const char *what) {
    snprintf(last_error, sizeof last_error, "%s", what);
    return -1;
}

const char *finch_mpi_error(void) { return last_error; }

int finch_mpi_init(int *rank, int *size) {
    const char *names[] = {"libmpi.so.40", "libmpi.so", NULL};
    void *lib = NULL;
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return fail("Open MPI's libmpi.so.40 could not be loaded (install openmpi-bin and libopenmpi-dev, or run without mpirun)");
#define SYM(var, name) if (!(*(void **)&var = dlsym(lib, name))) return fail("libmpi lacks " name " (is this Open MPI 4 or later?)")
    SYM(p_init, "MPI_Init"); SYM(p_finalize, "MPI_Finalize"); SYM(p_rank, "MPI_Comm_rank"); SYM(p_size, "MPI_Comm_size");
    SYM(p_allgather, "MPI_Allgather"); SYM(p_alltoall, "MPI_Alltoall"); SYM(p_bcast, "MPI_Bcast"); SYM(p_barrier, "MPI_Barrier"); SYM(p_abort, "MPI_Abort");
    SYM(comm_world, "ompi_mpi_comm_world"); SYM(dt_float, "ompi_mpi_float"); SYM(dt_double, "ompi_mpi_double");
    SYM(dt_byte, "ompi_mpi_byte");
#undef SYM
    int rc = p_init(NULL, NULL);
    if (rc) { snprintf(last_error, sizeof last_error, "MPI_Init failed (%d)", rc); return rc; }
    if ((rc = p_rank(comm_world, &me)) || (rc = p_size(comm_world, &world))) return fail("MPI_Comm_rank / MPI_Comm_size failed");
    *rank = me; *size = world;
    return 0;
}

// A fixed-order sum with the traffic of a ring all-reduce. Each bucket (at most 4 Mi values) is
// cut into `world` chunks; chunk r of every rank goes to rank r (MPI_Alltoall), which adds the
// ranks' chunks in rank order 0, 1, ...; the sums are then gathered by every rank (MPI_Allgather).
// Each rank sends and receives 2·(world − 1)/world of the bucket, like a ring, and every value is
// added in the same order whatever the world size, so every rank gets the same bits (and one
// value's sum is the one a single process adding the ranks' values in order would get).
#define BUCKET (4 << 20)

#define ALLREDUCE(T, DT)                                                                        \
    if (world == 1) return 0;                                                                   \
    int64_t most = count < BUCKET ? count : BUCKET;                                             \
    int64_t chunk = (most + world - 1) / world;                                                 \
    T *send = malloc(sizeof(T) * (size_t)world * (size_t)chunk);                               \
    T *recv = malloc(sizeof(T) * (size_t)world * (size_t)chunk);                               \
    T *mine = malloc(sizeof(T) * (size_t)chunk);                                               \
    if (!send || !recv || !mine) { free(send); free(recv); free(mine); return fail("out of memory for the all-reduce buffers"); } \
    int rc = 0;                                                                                 \
    for (int64_t off = 0; off < count && !rc; off += BUCKET) {                                  \
        int64_t n = count - off < BUCKET ? count - off : BUCKET;                                \
        int c = (int)((n + world - 1) / world);                                                 \
        memcpy(send, buf + off, sizeof(T) * (size_t)n);                                         \
        memset(send + n, 0, sizeof(T) * (size_t)((int64_t)world * c - n));                      \
        if ((rc = p_alltoall(send, c, DT, recv, c, DT, comm_world))) {                          \
            snprintf(last_error, sizeof last_error, "MPI_Alltoall failed (%d)", rc); break;     \
        }                                                                                       \
        for (int i = 0; i < c; i++) {                                                           \
            T s = recv[i];                                                                      \
            for (int r = 1; r < world; r++) s += recv[(size_t)r * c + i];                       \
            mine[i] = s;                                                                        \
        }                                                                                       \
        if ((rc = p_allgather(mine, c, DT, send, c, DT, comm_world))) {                         \
            snprintf(last_error, sizeof last_error, "MPI_Allgather failed (%d)", rc); break;    \
        }                                                                                       \
        memcpy(buf + off, send, sizeof(T) * (size_t)n);                                         \
    }                                                                                           \
    free(send); free(recv); free(mine);                                                         \
    return rc;

int finch_mpi_allreduce_sum_f32(float *buf, int64_t count) { ALLREDUCE(float, dt_float) }
int finch_mpi_allreduce_sum_f64(double *buf, int64_t count) { ALLREDUCE(double, dt_double) }

int finch_mpi_bcast(void *buf, int64_t count, int root) {
    if (world == 1) return 0;
    for (int64_t off = 0; off < count; off += (1 << 30)) {
        int n = (int)(count - off < (1 << 30) ? count - off : (1 << 30));
        int rc = p_bcast((char *)buf + off, n, dt_byte, root, comm_world);
        if (rc) return rc;
    }
    return 0;
}

int finch_mpi_barrier(void) { return world == 1 ? 0 : p_barrier(comm_world); }
void finch_mpi_abort(int code) { if (p_abort) p_abort(comm_world, code); exit(code); }
int finch_mpi_finalize(void) { return p_finalize ? p_finalize() : 0; }
