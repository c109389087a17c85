// y[M,N] (+)= x[M,K] · W[N,K]ᵀ for the small M of decoding: memory-bound on W, so each
// thread streams a contiguous slice of W's rows once and reuses them for every row of x.
#include "CFinchKernels.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

int finch_cpu_has_avx2(void);

enum { WF32 = 0, WBF16 = 1 };

struct lin_args {
    float *y; size_t ldy; const float *x; size_t ldx; const void *w;
    int M, N, K, acc, wtype;
    const uint16_t *xb;   // x rounded to bf16, [M, K] dense (AVX512-BF16 path only), else NULL
};

static inline float bf16_to_f32_1(uint16_t v) {
    uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f;
}

static void rows_portable(const struct lin_args *a, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        for (int m = 0; m < a->M; m++) {
            const float *x = a->x + (size_t)m * a->ldx;
            float s = 0;
            if (a->wtype == WF32) {
                const float *w = (const float *)a->w + (size_t)n * a->K;
                for (int k = 0; k < a->K; k++) s += x[k] * w[k];
            } else {
                const uint16_t *w = (const uint16_t *)a->w + (size_t)n * a->K;
                for (int k = 0; k < a->K; k++) s += x[k] * bf16_to_f32_1(w[k]);
            }
            float *y = a->y + (size_t)m * a->ldy + n;
            *y = a->acc ? *y + s : s;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline __m512 load16(const void *w, int wtype, size_t off, __mmask16 mask) {
    if (wtype == WF32) return _mm512_maskz_loadu_ps(mask, (const float *)w + off);
    __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/// One W row at a time, read front to back (a single sequential stream per thread, which
/// the hardware prefetcher follows at full DRAM bandwidth; software prefetch 4 KiB ahead),
/// against MC rows of x held in L1. 2·MC accumulators stay in registers (MC and WT are
/// compile-time constants in each instantiation).
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void row_avx512(const struct lin_args *a, int n, int m0, const int MC, const int WT) {
    const int K = a->K;
    const size_t esz = WT == WF32 ? 4 : 2;
    const char *wrow = (const char *)a->w + (size_t)n * K * esz;
    __m512 acc[4][2];
    for (int i = 0; i < MC; i++) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    const int K32 = K & ~31;
    int k = 0;
    for (; k < K32; k += 32) {
        _mm_prefetch(wrow + k * esz + 4096, _MM_HINT_T0);
        if (WT == WF32) _mm_prefetch(wrow + k * esz + 4096 + 64, _MM_HINT_T0);
        __m512 w0 = load16(a->w, WT, (size_t)n * K + k, 0xFFFF);
        __m512 w1 = load16(a->w, WT, (size_t)n * K + k + 16, 0xFFFF);
        for (int i = 0; i < MC; i++) {
            const float *x = a->x + (size_t)(m0 + i) * a->ldx + k;
            acc[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x), w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16), w1, acc[i][1]);
        }
    }
    for (; k < K; k += 16) {
        __mmask16 mask = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 w0 = load16(a->w, WT, (size_t)n * K + k, mask);
        for (int i = 0; i < MC; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, a->x + (size_t)(m0 + i) * a->ldx + k);
            acc[i][0] = _mm512_fmadd_ps(xv, w0, acc[i][0]);
        }
    }
    for (int i = 0; i < MC; i++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
        float *y = a->y + (size_t)(m0 + i) * a->ldy + n;
        *y = a->acc ? *y + s : s;
    }
}

#define FINCH_AVX512_ROWS(WT, NAME) \
__attribute__((target("avx512f,avx512bw,avx512vl"))) \
static void NAME(const struct lin_args *a, int n0, int n1) { \
    for (int m0 = 0; m0 < a->M; m0 += 4) { \
        switch (a->M - m0) { \
        case 1: for (int n = n0; n < n1; n++) row_avx512(a, n, m0, 1, WT); break; \
        case 2: for (int n = n0; n < n1; n++) row_avx512(a, n, m0, 2, WT); break; \
        case 3: for (int n = n0; n < n1; n++) row_avx512(a, n, m0, 3, WT); break; \
        default: for (int n = n0; n < n1; n++) row_avx512(a, n, m0, 4, WT); break; \
        } \
    } \
}
/// bf16 weights × bf16-rounded x with VDPBF16PS (pairs of products summed in f32): one
/// 512-bit load covers 32 weights, no widening. Same streaming order as row_avx512.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline))
static inline void row_dpbf16(const struct lin_args *a, int n, int m0, const int MC) {
    const int K = a->K;
    const uint16_t *wrow = (const uint16_t *)a->w + (size_t)n * K;
    __m512 acc[4][2];
    for (int i = 0; i < MC; i++) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    const int K64 = K & ~63;
    int k = 0;
    for (; k < K64; k += 64) {
        _mm_prefetch((const char *)(wrow + k) + 4096, _MM_HINT_T0);
        _mm_prefetch((const char *)(wrow + k) + 4096 + 64, _MM_HINT_T0);
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(wrow + k);
        __m512bh w1 = (__m512bh)_mm512_loadu_si512(wrow + k + 32);
        for (int i = 0; i < MC; i++) {
            const uint16_t *x = a->xb + (size_t)(m0 + i) * K + k;
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], (__m512bh)_mm512_loadu_si512(x), w0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], (__m512bh)_mm512_loadu_si512(x + 32), w1);
        }
    }
    for (; k < K; k += 32) {   // K is even: the tail is whole pairs
        int pairs = (K - k) / 2 < 16 ? (K - k) / 2 : 16;
        __mmask16 mask = (__mmask16)((1u << pairs) - 1);
        __m512bh w0 = (__m512bh)_mm512_maskz_loadu_epi32(mask, wrow + k);
        for (int i = 0; i < MC; i++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi32(mask, a->xb + (size_t)(m0 + i) * K + k);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], xv, w0);
        }
    }
    for (int i = 0; i < MC; i++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
        float *y = a->y + (size_t)(m0 + i) * a->ldy + n;
        *y = a->acc ? *y + s : s;
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void rows_dpbf16(const struct lin_args *a, int n0, int n1) {
    for (int m0 = 0; m0 < a->M; m0 += 4) {
        switch (a->M - m0) {
        case 1: for (int n = n0; n < n1; n++) row_dpbf16(a, n, m0, 1); break;
        case 2: for (int n = n0; n < n1; n++) row_dpbf16(a, n, m0, 2); break;
        case 3: for (int n = n0; n < n1; n++) row_dpbf16(a, n, m0, 3); break;
        default: for (int n = n0; n < n1; n++) row_dpbf16(a, n, m0, 4); break;
        }
    }
}

FINCH_AVX512_ROWS(WF32, rows_avx512_f32)
FINCH_AVX512_ROWS(WBF16, rows_avx512_bf16)

__attribute__((target("avx2,fma")))
static inline __m256 load8(const void *w, int wtype, size_t off) {
    if (wtype == WF32) return _mm256_loadu_ps((const float *)w + off);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + off));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma")))
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static void rows_avx2(const struct lin_args *a, int n0, int n1) {
    const int K = a->K, K8 = K & ~7;
    int n = n0;
    for (; n + 2 <= n1; n += 2) {
        for (int m0 = 0; m0 < a->M; m0 += 4) {
            int mc = a->M - m0 < 4 ? a->M - m0 : 4;
            __m256 acc[4][2];
            for (int i = 0; i < 4; i++) { acc[i][0] = _mm256_setzero_ps(); acc[i][1] = _mm256_setzero_ps(); }
            for (int k = 0; k < K8; k += 8) {
                __m256 w0 = load8(a->w, a->wtype, (size_t)n * K + k);
                __m256 w1 = load8(a->w, a->wtype, (size_t)(n + 1) * K + k);
                for (int i = 0; i < mc; i++) {
                    __m256 xv = _mm256_loadu_ps(a->x + (size_t)(m0 + i) * a->ldx + k);
                    acc[i][0] = _mm256_fmadd_ps(xv, w0, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(xv, w1, acc[i][1]);
                }
            }
            for (int i = 0; i < mc; i++) {
                const float *x = a->x + (size_t)(m0 + i) * a->ldx;
                float *y = a->y + (size_t)(m0 + i) * a->ldy + n;
                for (int r = 0; r < 2; r++) {
                    float s = hsum8(acc[i][r]);
                    for (int k = K8; k < K; k++) {
                        float wv = a->wtype == WF32 ? ((const float *)a->w)[(size_t)(n + r) * K + k]
                                                    : bf16_to_f32_1(((const uint16_t *)a->w)[(size_t)(n + r) * K + k]);
                        s += x[k] * wv;
                    }
                    y[r] = a->acc ? y[r] + s : s;
                }
            }
        }
    }
    if (n < n1) rows_portable(a, n, n1);
}
#endif

static void lin_worker(void *ctx, int tid, int nt) {
    const struct lin_args *a = (const struct lin_args *)ctx;
    // Slices of 16 rows so every thread's W range starts on a 64-byte boundary.
    int n0, n1;
    finch_row_share(a->N, 16, tid, nt, &n0, &n1);
    if (n0 >= n1) return;
#if defined(__x86_64__)
    if (a->xb) { rows_dpbf16(a, n0, n1); return; }
    if (finch_cpu_avx512_level() > 0) {
        if (a->wtype == WF32) rows_avx512_f32(a, n0, n1); else rows_avx512_bf16(a, n0, n1);
        return;
    }
    if (finch_cpu_has_avx2()) { rows_avx2(a, n0, n1); return; }
#endif
    rows_portable(a, n0, n1);
}

static void run_linear(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                       int M, int N, int K, int acc, int wtype) {
    struct lin_args a = { y, ldy, x, ldx, w, M, N, K, acc, wtype, NULL };
    // bf16 weights always multiply bf16-rounded x (as the bf16 GEMM path does), so results
    // do not depend on the CPU: with AVX512-BF16 as a bf16 copy fed to VDPBF16PS, elsewhere
    // as a rounded f32 copy fed to the widening kernels.
    uint16_t xb_stack[4 * 2048];
    uint16_t *xb = NULL;
    float *xr = NULL;
    if (wtype == WBF16) {
        size_t need = (size_t)M * K;
        if ((K % 2) == 0 && finch_cpu_avx512_level() >= 2) {
            xb = need <= sizeof xb_stack / sizeof xb_stack[0] ? xb_stack : (uint16_t *)malloc(need * sizeof(uint16_t));
            if (!xb) return;
            for (int m = 0; m < M; m++) finch_f32_to_bf16(xb + (size_t)m * K, x + (size_t)m * ldx, (size_t)K);
            a.xb = xb;
        } else {
            xr = (float *)malloc(need * sizeof(float));
            uint16_t *tmp = (uint16_t *)malloc((size_t)K * sizeof(uint16_t));
            if (!xr || !tmp) { free(xr); free(tmp); return; }
            for (int m = 0; m < M; m++) {
                finch_f32_to_bf16(tmp, x + (size_t)m * ldx, (size_t)K);
                finch_bf16_to_f32(xr + (size_t)m * K, tmp, (size_t)K);
            }
            free(tmp);
            a.x = xr; a.ldx = (size_t)K;
        }
    }
    if ((long)N * K < 32768) lin_worker(&a, 0, 1);
    else finch_parallel_run(lin_worker, &a);
    if (xb && xb != xb_stack) free(xb);
    free(xr);
}

void finch_linear_small_f32(float *y, size_t ldy, const float *x, size_t ldx,
                            const float *w, int M, int N, int K, int accumulate) {
    run_linear(y, ldy, x, ldx, w, M, N, K, accumulate, WF32);
}

void finch_linear_small_bf16(float *y, size_t ldy, const float *x, size_t ldx,
                             const uint16_t *w, int M, int N, int K, int accumulate) {
    run_linear(y, ldy, x, ldx, w, M, N, K, accumulate, WBF16);
}
