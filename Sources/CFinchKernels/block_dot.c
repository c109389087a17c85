// Dimension letters: M activation rows (≤ 4, decoding), N weight rows (outputs), K columns
// (inputs), G groups of 32 columns (G = K / 32).
//
// Integer products for decoding straight from llama.cpp's quantized blocks, as llama.cpp
// multiplies them: the activation rows quantized to int8 in groups of 32 with one f32 scale each
// (finch_quantize_q8_groups), every group of 32 weights unpacked in registers to small integers,
// u8 × s8 sums in int32 (`vpdpbusd` with AVX512-VNNI or AVX-VNNI, AVX2's `vpmaddubsw` +
// `vpmaddwd` otherwise, portable C elsewhere), the block's scales applied in f32.
//
// Each type's weights enter the integer sum unsigned (q ≥ 0, their offset or minimum applied
// afterwards through the group's activation sum s = d·Σq: w·x = scale·d·Σ q·qx + offset·s) or,
// where the offset changes within a group (Q6_K's 16-value scales) or the values are signed
// (Q8_0, int8 rows), signed through the sign trick Σ w·a = Σ |w|·(a·sign w).
// Block layouts (little-endian; d, m, dmin f16):
//   Q4_0 18 B: d, qs[16]                 w = d·(q − 8)      q lo nibble of qs[j] (j < 16), hi of qs[j − 16]
//   Q4_1 20 B: d, m, qs[16]              w = d·q + m
//   Q5_0 22 B: d, qh u32, qs[16]         w = d·(q − 16)     bit 4 of q_j is bit j of qh
//   Q5_1 24 B: d, m, qh u32, qs[16]      w = d·q + m
//   Q8_0 34 B: d, qs[32] (s8)            w = d·q
//   Q4_K 144 B per 256: d, dmin, scales[12] (six-bit sc_j, m_j), qs[128]: w = d·sc_j·q − dmin·m_j
//               for groups j = 0..7 (bytes 32c..32c+31: group 2c in the low, 2c+1 in the high nibble)
//   Q5_K 176 B per 256: as Q4_K with qh[32] before qs (bit j of qh[l]: bit 4 of element 32j + l)
//   Q6_K 210 B per 256: ql[128], qh[64], s8 scales[16], d: w = d·sc_i·(q − 32), one scale per 16
//   int8 rows (FINCH_BLOCK_S8_ROWS): s8 [N, K] with one f32 scale per row (Int8Product's form)
#include "CFinchKernels.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };

static inline float half_at(const uint8_t *p) {
    _Float16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

static inline uint32_t u32_at(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Six-bit scale and minimum j (0..7) of a Q4_K / Q5_K block's 12 scale bytes.
static inline void scale_min_k4(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) { *sc = s[j] & 63; *m = s[j + 4] & 63; return; }
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
}

int finch_block_dot_supported(int type) {
    switch (type) {
    case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: case T_Q8_0: case T_Q4_K: case T_Q5_K: case T_Q6_K:
    case FINCH_BLOCK_S8_ROWS: return 1;
    default: return 0;
    }
}

void finch_quantize_q8_groups(const float *x, size_t ldx, int M, int K, int8_t *q, float *d, float *s) {
    const int G = K / 32;
    for (int m = 0; m < M; m++) {
        for (int g = 0; g < G; g++) {
            const float *v = x + (size_t)m * ldx + 32 * g;
            int8_t *out = q + (size_t)m * K + 32 * g;
            float amax = 0;
            for (int j = 0; j < 32; j++) { float a = fabsf(v[j]); amax = a > amax || a != a ? a : amax; }
            if (!isfinite(amax)) {   // a NaN or infinity reaches the output as NaN
                memset(out, 0, 32);
                d[m * G + g] = NAN; s[m * G + g] = NAN;
                continue;
            }
            const float dd = amax / 127, id = dd > 0 ? 1.0f / dd : 0.0f;
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                float r = nearbyintf(v[j] * id);
                int iv = (int)(r > 127 ? 127 : r < -127 ? -127 : r);
                out[j] = (int8_t)iv;
                sum += iv;
            }
            d[m * G + g] = dd;
            s[m * G + g] = dd * (float)sum;
        }
    }
}

struct block_args {
    int type;
    const uint8_t *w;
    size_t row_bytes;
    const ptrdiff_t *order;
    const float *row_scales;
    int M, N, K;
    const int8_t *xq;
    const float *xd, *xs;
    float *y;
    size_t ldy;
    int accumulate;
};

static inline void store_rows(const struct block_args *a, int n, const float *sum) {
    for (int m = 0; m < a->M; m++) {
        float *out = a->y + (size_t)m * a->ldy + n;
        *out = a->accumulate ? *out + sum[m] : sum[m];
    }
}

// --- portable C ---

// Group g of a stored row as integers v[32] (offsets of Q4_0 / Q5_0 / Q6_K applied), their
// scales (sc[0] for v[0..15], sc[1] for v[16..31]) and the minimum term mn (w = sc·v + mn).
static void group_portable(int type, const uint8_t *row, int g, float rs, int v[32], float sc[2], float *mn) {
    *mn = 0;
    switch (type) {
    case T_Q4_0: case T_Q4_1: {
        const uint8_t *b = row + (size_t)g * (type == T_Q4_0 ? 18 : 20);
        const uint8_t *qs = b + (type == T_Q4_0 ? 2 : 4);
        const int off = type == T_Q4_0 ? 8 : 0;
        for (int j = 0; j < 16; j++) { v[j] = (qs[j] & 15) - off; v[j + 16] = (qs[j] >> 4) - off; }
        sc[0] = sc[1] = half_at(b);
        if (type == T_Q4_1) *mn = half_at(b + 2);
        return;
    }
    case T_Q5_0: case T_Q5_1: {
        const int legacy = type == T_Q5_0;
        const uint8_t *b = row + (size_t)g * (legacy ? 22 : 24);
        const uint32_t qh = u32_at(b + (legacy ? 2 : 4));
        const uint8_t *qs = b + (legacy ? 6 : 8);
        const int off = legacy ? 16 : 0;
        for (int j = 0; j < 16; j++) {
            v[j] = ((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - off;
            v[j + 16] = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off;
        }
        sc[0] = sc[1] = half_at(b);
        if (!legacy) *mn = half_at(b + 2);
        return;
    }
    case T_Q8_0: {
        const uint8_t *b = row + (size_t)g * 34;
        for (int j = 0; j < 32; j++) v[j] = (int8_t)b[2 + j];
        sc[0] = sc[1] = half_at(b);
        return;
    }
    case T_Q4_K: case T_Q5_K: {
        const int five = type == T_Q5_K;
        const uint8_t *b = row + (size_t)(g / 8) * (five ? 176 : 144);
        const int j = g % 8;
        int s, m;
        scale_min_k4(b + 4, j, &s, &m);
        const uint8_t *qs = b + (five ? 48 : 16) + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int q = j % 2 ? qs[l] >> 4 : qs[l] & 15;
            if (five) q |= ((b[16 + l] >> j) & 1) << 4;
            v[l] = q;
        }
        sc[0] = sc[1] = half_at(b) * (float)s;
        *mn = -half_at(b + 2) * (float)m;
        return;
    }
    case T_Q6_K: {
        const uint8_t *b = row + (size_t)(g / 8) * 210;
        const int hf = (g % 8) / 4, s = g % 4;
        const uint8_t *l4 = b + 64 * hf + 32 * (s % 2), *h2 = b + 128 + 32 * hf;
        const int8_t *scales = (const int8_t *)(b + 192) + 8 * hf;
        for (int l = 0; l < 32; l++) v[l] = (((l4[l] >> (4 * (s / 2))) & 15) | ((h2[l] >> (2 * s)) & 3) << 4) - 32;
        const float d = half_at(b + 208);
        sc[0] = d * (float)scales[2 * s];
        sc[1] = d * (float)scales[2 * s + 1];
        return;
    }
    default: {   // int8 rows
        const int8_t *r = (const int8_t *)row + 32 * g;
        for (int j = 0; j < 32; j++) v[j] = r[j];
        sc[0] = sc[1] = rs;
        return;
    }
    }
}

static void rows_portable(const struct block_args *a, int n0, int n1) {
    const int G = a->K / 32;
    for (int n = n0; n < n1; n++) {
        const size_t stored = (size_t)(a->order ? a->order[n] : n);
        const uint8_t *row = a->w + stored * a->row_bytes;
        const float rs = a->row_scales ? a->row_scales[stored] : 1;
        float sum[4] = {0, 0, 0, 0};
        for (int g = 0; g < G; g++) {
            int v[32];
            float sc[2], mn;
            group_portable(a->type, row, g, rs, v, sc, &mn);
            for (int m = 0; m < a->M; m++) {
                const int8_t *xq = a->xq + (size_t)m * a->K + 32 * g;
                int s0 = 0, s1 = 0;
                for (int j = 0; j < 16; j++) { s0 += v[j] * xq[j]; s1 += v[j + 16] * xq[j + 16]; }
                sum[m] += a->xd[m * G + g] * (sc[0] * (float)s0 + sc[1] * (float)s1) + mn * a->xs[m * G + g];
            }
        }
        store_rows(a, n, sum);
    }
}

// --- x86-64: one body (block_dot_simd.h) for three ways of summing u8 × s8 pairs ---
#if defined(__x86_64__)
#define BD_TARGET "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni"
#define BD_NAME(x) x##_vnni512
#define BD_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#include "block_dot_simd.h"
#undef BD_TARGET
#undef BD_NAME
#undef BD_DPBUSD

#define BD_TARGET "avx2,fma,avxvnni"
#define BD_NAME(x) x##_avxvnni
#define BD_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#include "block_dot_simd.h"
#undef BD_TARGET
#undef BD_NAME
#undef BD_DPBUSD

#define BD_TARGET "avx2,fma"
#define BD_NAME(x) x##_avx2
#define BD_DPBUSD(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#include "block_dot_simd.h"
#undef BD_TARGET
#undef BD_NAME
#undef BD_DPBUSD
#endif

static void block_worker(void *ctx, int tid, int nt) {
    const struct block_args *a = (const struct block_args *)ctx;
    int n0, n1;
    finch_row_share(a->N, 16, tid, nt, &n0, &n1);
    if (n0 >= n1) return;
#if defined(__x86_64__)
    switch (finch_cpu_int8_dot()) {
    case 2: rows_simd_vnni512(a, n0, n1); return;
    case 1: rows_simd_avxvnni(a, n0, n1); return;
    default: if (finch_cpu_has_avx2()) { rows_simd_avx2(a, n0, n1); return; }
    }
#endif
    rows_portable(a, n0, n1);
}

int finch_block_gemv_q8(int type, const void *w, size_t row_bytes, const ptrdiff_t *row_order, const float *row_scales,
                        int M, int N, int K, const int8_t *xq, const float *xd, const float *xs,
                        float *y, size_t ldy, int accumulate) {
    if (!finch_block_dot_supported(type) || M < 1 || M > 4 || K % 32 != 0) return 0;
    if ((type == T_Q4_K || type == T_Q5_K || type == T_Q6_K) && K % 256 != 0) return 0;
    if (type == FINCH_BLOCK_S8_ROWS && !row_scales) return 0;
    struct block_args a = { type, (const uint8_t *)w, row_bytes, row_order, row_scales, M, N, K, xq, xd, xs, y, ldy, accumulate };
    if ((long)N * K < 32768) block_worker(&a, 0, 1);
    else finch_parallel_run(block_worker, &a);
    return 1;
}
