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
    SYM(p_allgather, "MPI_Allgather"); SYM(p_bcast, "MPI_Bcast"); SYM(p_barrier, "MPI_Barrier"); SYM(p_abort, "MPI_Abort");
    SYM(comm_world, "ompi_mpi_comm_world"); SYM(dt_float, "ompi_mpi_float"); SYM(dt_double, "ompi_mpi_double");
    SYM(dt_byte, "ompi_mpi_byte");
#undef SYM
    int rc = p_init(NULL, NULL);
    if (rc) { snprintf(last_error, sizeof last_error, "MPI_Init failed (%d)", rc); return rc; }
    if ((rc = p_rank(comm_world, &me)) || (rc = p_size(comm_world, &world))) return fail("MPI_Comm_rank / MPI_Comm_size failed");
    *rank = me; *size = world;
    return 0;
}

// Buckets of at most 4 Mi values: the gather buffer holds world × bucket values.
#define BUCKET (4 << 20)

#define ALLREDUCE(T, DT)                                                                        \
    if (world == 1) return 0;                                                                   \
    T *all = malloc(sizeof(T) * (size_t)world * (size_t)(count < BUCKET ? count : BUCKET));     \
    if (!all) return fail("out of memory for the all-reduce buffer");                           \
    for (int64_t off = 0; off < count; off += BUCKET) {                                         \
        int n = (int)(count - off < BUCKET ? count - off : BUCKET);                             \
        int rc = p_allgather(buf + off, n, DT, all, n, DT, comm_world);                         \
        if (rc) { free(all); snprintf(last_error, sizeof last_error, "MPI_Allgather failed (%d)", rc); return rc; } \
        for (int i = 0; i < n; i++) {                                                           \
            T s = all[i];                                                                       \
            for (int r = 1; r < world; r++) s += all[(size_t)r * n + i];                        \
            buf[off + i] = s;                                                                   \
        }                                                                                       \
    }                                                                                           \
    free(all);                                                                                  \
    return 0;

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
