// y[M,N] (+)= x[M,K] · W[N,K]ᵀ for the small M of decoding, with W in bitsandbytes' blockwise
// 4-bit layout, multiplied straight from the packed nibbles (no expanded copy of W): decoding
// is bound by memory bandwidth, and 4-bit W is 1/8 of the f32 bytes.
//
// Byte j of a row holds elements 2j (high nibble) and 2j+1 (low nibble), so x is split once per
// call into its even and odd elements; then 16 bytes give 16 high and 16 low nibbles, each
// looked up in the 16-entry code table held in one register (vpermps) and multiplied by the
// matching 16 even / odd x values. A block's products are summed, then scaled by its absmax
// once: Σ_b absmax_b · Σ_{i∈b} code[q_i] · x_i.
#include "CFinchKernels.h"
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

struct lin4_args {
    float *y; size_t ldy; int M, N, K, acc;
    const uint8_t *packed; const float *code; int blocksize;
    const float *absmax;                                   // plain scales, or NULL:
    const uint8_t *qabs; const float *nabs; const float *ncode; int nblock; float offset;   // double-quantized
    const float *xe, *xo;                                  // [M, K/2] even / odd elements of x
};

/// The float32 absmax of block b (decoded as FourBitTensor.absmax(): code · nested, then + offset).
static inline float block_absmax(const struct lin4_args *a, size_t b) {
    if (a->absmax) return a->absmax[b];
    float v = a->ncode[a->qabs[b]] * a->nabs[b / (size_t)a->nblock];
    return v + a->offset;
}

static void rows4_scalar(const struct lin4_args *a, int n0, int n1) {
    const int K = a->K, half = K / 2, bs = a->blocksize;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = a->packed + (size_t)n * half;
        for (int m = 0; m < a->M; m++) {
            const float *xe = a->xe + (size_t)m * half, *xo = a->xo + (size_t)m * half;
            float s = 0;
            for (int b0 = 0; b0 < K; b0 += bs) {
                float t = 0;
                for (int j = b0 / 2; j < (b0 + bs) / 2; j++) {
                    t += a->code[row[j] >> 4] * xe[j];
                    t += a->code[row[j] & 15] * xo[j];
                }
                s += t * block_absmax(a, ((size_t)n * K + b0) / bs);
            }
            float *y = a->y + (size_t)m * a->ldy + n;
            *y = a->acc ? *y + s : s;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void row4_avx512(const struct lin4_args *a, int n, const int MC, int m0) {
    const int K = a->K, half = K / 2, bs = a->blocksize;
    const uint8_t *row = a->packed + (size_t)n * half;
    const __m512 table = _mm512_loadu_ps(a->code);
    const __m512i fifteen = _mm512_set1_epi32(15);
    __m512 acc[4];
    for (int i = 0; i < MC; i++) acc[i] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < K; b0 += bs) {
        __m512 t[4];
        for (int i = 0; i < MC; i++) t[i] = _mm512_setzero_ps();
        for (int j = b0 / 2; j < (b0 + bs) / 2; j += 16) {
            _mm_prefetch((const char *)(row + j) + 1024, _MM_HINT_T0);
            __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + j)));
            __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
            __m512 wl = _mm512_permutexvar_ps(_mm512_and_si512(q, fifteen), table);
            for (int i = 0; i < MC; i++) {
                const size_t off = (size_t)(m0 + i) * half + j;
                t[i] = _mm512_fmadd_ps(wh, _mm512_loadu_ps(a->xe + off), t[i]);
                t[i] = _mm512_fmadd_ps(wl, _mm512_loadu_ps(a->xo + off), t[i]);
            }
        }
        const __m512 s = _mm512_set1_ps(block_absmax(a, ((size_t)n * K + b0) / bs));
        for (int i = 0; i < MC; i++) acc[i] = _mm512_fmadd_ps(t[i], s, acc[i]);
    }
    for (int i = 0; i < MC; i++) {
        float s = _mm512_reduce_add_ps(acc[i]);
        float *y = a->y + (size_t)(m0 + i) * a->ldy + n;
        *y = a->acc ? *y + s : s;
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void rows4_avx512(const struct lin4_args *a, int n0, int n1) {
    for (int m0 = 0; m0 < a->M; m0 += 4) {
        switch (a->M - m0) {
        case 1: for (int n = n0; n < n1; n++) row4_avx512(a, n, 1, m0); break;
        case 2: for (int n = n0; n < n1; n++) row4_avx512(a, n, 2, m0); break;
        case 3: for (int n = n0; n < n1; n++) row4_avx512(a, n, 3, m0); break;
        default: for (int n = n0; n < n1; n++) row4_avx512(a, n, 4, m0); break;
        }
    }
}
#endif

static void lin4_worker(void *ctx, int tid, int nt) {
    const struct lin4_args *a = (const struct lin4_args *)ctx;
    // Slices of 16 rows: every thread's packed rows start on a 64-byte boundary when K % 8 == 0.
    int n0, n1;
    finch_row_share(a->N, 16, tid, nt, &n0, &n1);
    if (n0 >= n1) return;
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0 && a->blocksize % 32 == 0) { rows4_avx512(a, n0, n1); return; }
#endif
    rows4_scalar(a, n0, n1);
}

int finch_linear4_small(float *y, size_t ldy, const float *x, size_t ldx, int M, int N, int K,
                        const uint8_t *packed, const float *code, int blocksize, const float *absmax,
                        const uint8_t *qabs, const float *nabs, const float *ncode, int nblock, float offset,
                        int accumulate) {
    if (K % blocksize != 0 || blocksize % 2 != 0) return 0;
    const int half = K / 2;
    float *xs = (float *)malloc((size_t)M * K * sizeof(float));
    if (!xs) return 0;
    float *xe = xs, *xo = xs + (size_t)M * half;
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * ldx;
        for (int j = 0; j < half; j++) { xe[(size_t)m * half + j] = xm[2 * j]; xo[(size_t)m * half + j] = xm[2 * j + 1]; }
    }
    struct lin4_args a = { y, ldy, M, N, K, accumulate, packed, code, blocksize, absmax,
                           qabs, nabs, ncode, nblock, offset, xe, xo };
    if ((long)N * K < 65536) lin4_worker(&a, 0, 1);
    else finch_parallel_run(lin4_worker, &a);
    free(xs);
    return 1;
}
