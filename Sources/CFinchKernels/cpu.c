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
