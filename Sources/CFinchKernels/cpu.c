#include "CFinchKernels.h"
#include <dlfcn.h>
#include <stddef.h>

static int forced = -1;   // -1: detect; else 0 portable, 1 avx2, 2 avx512, 3 avx512+bf16

int finch_force_kernel_path(const char *name) {
    if (!name) { forced = -1; return 1; }
    const char *names[] = { "portable", "avx2", "avx512", "avx512bf16" };
    for (int i = 0; i < 4; i++) {
        const char *a = name, *b = names[i];
        while (*a && *a == *b) { a++; b++; }
        if (*a == 0 && *b == 0) { forced = i; return 1; }
    }
    return 0;
}

int finch_cpu_avx512_level(void) {
    if (forced >= 0) return forced >= 2 ? forced - 1 : 0;
#if defined(__x86_64__)
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = 0;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
            level = 1;
            if (__builtin_cpu_supports("avx512bf16")) level = 2;
        }
    }
    return level;
#else
    return 0;
#endif
}

int finch_cpu_int8_dot(void) {
    if (forced >= 0 && forced < 2) return 0;
#if defined(__x86_64__)
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = 0;
        if (__builtin_cpu_supports("avxvnni")) level = 1;
        if (finch_cpu_avx512_level() > 0 && __builtin_cpu_supports("avx512vnni")) level = 2;
    }
    return level;
#else
    return 0;
#endif
}

int finch_cpu_has_avx2(void) {
    if (forced >= 0) return forced >= 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

const char *finch_kernel_path(void) {
    if (finch_cpu_avx512_level() > 0) return "avx512";
    if (finch_cpu_has_avx2()) return "avx2";
    return "portable";
}

// --- parallel runner over libgomp's team (the runtime Debian's oneDNN is built with) ---
typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_t p_parallel;
static int (*p_thread_num)(void);
static int (*p_num_threads)(void);
static int (*p_max_threads)(void);
static int (*p_in_parallel)(void);
static int resolved;

static void resolve(void) {
    if (resolved) return;
    // RTLD_DEFAULT is the null handle, so "found" is tracked apart from the handle.
    void *h = RTLD_DEFAULT;
    int found = dlsym(h, "GOMP_parallel") != NULL;
    if (!found) {
        h = dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL);
        found = h != NULL;
    }
    if (found) {
        p_parallel = (gomp_parallel_t)dlsym(h, "GOMP_parallel");
        p_thread_num = (int (*)(void))dlsym(h, "omp_get_thread_num");
        p_num_threads = (int (*)(void))dlsym(h, "omp_get_num_threads");
        p_max_threads = (int (*)(void))dlsym(h, "omp_get_max_threads");
        p_in_parallel = (int (*)(void))dlsym(h, "omp_in_parallel");
        if (!p_thread_num || !p_num_threads || !p_max_threads || !p_in_parallel) p_parallel = NULL;
    }
    __atomic_store_n(&resolved, 1, __ATOMIC_RELEASE);
}

struct job { void (*fn)(void *, int, int); void *ctx; };

static void trampoline(void *data) {
    struct job *j = (struct job *)data;
    j->fn(j->ctx, p_thread_num(), p_num_threads());
}

int finch_max_threads(void) {
    resolve();
    return p_parallel ? p_max_threads() : 1;
}

void finch_row_share(int n, int align, int tid, int nthreads, int *begin, int *end) {
    int slices = (n + align - 1) / align;
    int s0 = (int)((long)slices * tid / nthreads), s1 = (int)((long)slices * (tid + 1) / nthreads);
    *begin = s0 * align;
    *end = s1 * align < n ? s1 * align : n;
}

void finch_parallel_run(void (*fn)(void *ctx, int tid, int nthreads), void *ctx) {
    resolve();
    if (!p_parallel || p_in_parallel() || p_max_threads() <= 1) { fn(ctx, 0, 1); return; }
    struct job j = { fn, ctx };
    p_parallel(trampoline, &j, 0, 0);
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif
void finch_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void finch_map_large_allocations(size_t threshold) {
#if defined(__GLIBC__)
    // A fixed threshold also turns off glibc's dynamic one, which otherwise rises after large
    // frees and then serves multi-MiB buffers from the heap, where freed memory stays resident.
    mallopt(M_MMAP_THRESHOLD, (int)threshold);
#else
    (void)threshold;
#endif
}

// --- OpenBLAS kernel choice ---
// Debian's OpenBLAS is a DYNAMIC_ARCH build that picks its kernels by the CPU's family and model
// when it loads; on a CPU it does not know (a VM reporting "Intel Xeon Processor", a new model) it
// falls back to the generic Prescott kernels, 5-10x slower than the AVX-512 ones on the same CPU.
// When OPENBLAS_CORETYPE is unset and the chosen core is such a generic one while the CPU has
// AVX-512 (or AVX2 + FMA), this selects SkylakeX (or Haswell) through OpenBLAS's own dynamic
// initialisation, which reads OPENBLAS_CORETYPE. Call it before the first BLAS call.
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static char openblas_core_before[64], openblas_core_after[64];

static int is_generic_core(const char *name) {
    const char *generic[] = { "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai",
                              "coppermine", "northwood", "banias", "unknown", "generic" };
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcasecmp(name, generic[i]) == 0) return 1;
    return 0;
}

const char *finch_openblas_select_core(void) {
    if (openblas_core_after[0]) return openblas_core_after;
    const char *(*get_name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    if (!get_name) { snprintf(openblas_core_after, sizeof openblas_core_after, "unknown"); return openblas_core_after; }
    snprintf(openblas_core_before, sizeof openblas_core_before, "%s", get_name());
    const char *target = NULL;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd")) target = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) target = "Haswell";
#endif
    if (target && !getenv("OPENBLAS_CORETYPE") && is_generic_core(openblas_core_before)) {
        void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
        void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
        if (quit && init) {
            setenv("OPENBLAS_CORETYPE", target, 0);
            quit();
            init();
        }
    }
    snprintf(openblas_core_after, sizeof openblas_core_after, "%s", get_name());
    return openblas_core_after;
}

const char *finch_openblas_core_at_load(void) {
    finch_openblas_select_core();
    return openblas_core_before;
}
