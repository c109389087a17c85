// Dimension letters: R rows, C columns.
//
// The conversions around an integer product (Int8Product): rows quantized to int8 with one scale
// each (symmetric, ±127, round to nearest even: the results of the portable code and of the
// AVX-512 path are the same), and int32 sums scaled back to float.
#include "CFinchKernels.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The row's largest |value|, or NaN when it holds a NaN (so that it reaches the output).
static float row_absmax(const float *x, const float *f, int c) {
    float m = 0;
    int nan = 0;
    for (int j = 0; j < c; j++) {
        float v = fabsf(f ? x[j] * f[j] : x[j]);
        nan |= v != v;
        if (v > m) m = v;
    }
    return nan ? NAN : m;
}

static void quantize_portable(const float *x, const float *f, int c, float inv, int8_t *q) {
    for (int j = 0; j < c; j++) {
        float v = nearbyintf((f ? x[j] * f[j] : x[j]) * inv);
        q[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl")))
static float row_absmax_avx512(const float *x, const float *f, int c) {
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0;
    int j = 0;
    for (; j + 16 <= c; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        if (f) v = _mm512_mul_ps(v, _mm512_loadu_ps(f + j));
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    float r = _mm512_reduce_max_ps(m), tail = row_absmax(x + j, f ? f + j : 0, c - j);
    if (nan || tail != tail) return NAN;
    return tail > r ? tail : r;
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_avx512(const float *x, const float *f, int c, float inv, int8_t *q) {
    const __m512 s = _mm512_set1_ps(inv), hi = _mm512_set1_ps(127), lo = _mm512_set1_ps(-127);
    int j = 0;
    for (; j + 16 <= c; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        if (f) v = _mm512_mul_ps(v, _mm512_loadu_ps(f + j));
        v = _mm512_roundscale_ps(_mm512_mul_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm_storeu_si128((__m128i *)(q + j), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    quantize_portable(x + j, f ? f + j : 0, c - j, inv, q + j);
}
#endif

static void quantize_row(const float *row, const float *kept, int c, int wide, int8_t *out, float *scale) {
#if defined(__x86_64__)
    float m = wide ? row_absmax_avx512(row, kept, c) : row_absmax(row, kept, c);
#else
    (void)wide;
    float m = row_absmax(row, kept, c);
#endif
    if (!(m > 0) || !isfinite(m)) {
        *scale = isfinite(m) ? 1.0f : m;
        for (int j = 0; j < c; j++) out[j] = 0;
        return;
    }
    *scale = m / 127;
#if defined(__x86_64__)
    if (wide) { quantize_avx512(row, kept, c, 127 / m, out); return; }
#endif
    quantize_portable(row, kept, c, 127 / m, out);
}

void finch_quantize_rows_s8(const float *x, int rows, int c, const float *factors, int8_t *q, float *scales) {
    finch_quantize_rows_s8_split(x, rows, c, factors, NULL, 0, q, scales, NULL);
}

// --- scaling the sums back, with the outlier columns' f32 part added in the same pass over the output ---

// Dimension letters here: K outlier columns.

static void scale_sums_outliers_portable(const int32_t *sums, int rows, int c, const float *rs, const float *cs,
                                         const float *xo, int k, const float *wo, float *out, int accumulate) {
    for (int r = 0; r < rows; r++) {
        const int32_t *src = sums + (size_t)r * c;
        float *dst = out + (size_t)r * c;
        for (int j = 0; j < c; j++) {
            float v = (float)src[j] * rs[r] * (cs ? cs[j] : 1.0f);
            for (int t = 0; t < k; t++) v += xo[(size_t)r * k + t] * wo[(size_t)t * c + j];
            dst[j] = accumulate ? dst[j] + v : v;
        }
    }
}

#if defined(__x86_64__)
// Eight rows at a time, 16 columns in registers: the K outlier weights of those columns are read once per
// eight rows, the output written once.
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void scale_sums_outliers_avx512(const int32_t *sums, int rows, int c, const float *rs, const float *cs,
                                       const float *xo, int k, const float *wo, float *out, int accumulate) {
    for (int r0 = 0; r0 < rows; r0 += 8) {
        const int nr = rows - r0 < 8 ? rows - r0 : 8;
        for (int j = 0; j < c; j += 16) {
            const __mmask16 m = j + 16 <= c ? (__mmask16)0xFFFF : (__mmask16)((1u << (c - j)) - 1);
            const __m512 cv = cs ? _mm512_maskz_loadu_ps(m, cs + j) : _mm512_set1_ps(1.0f);
            __m512 acc[8];
            for (int i = 0; i < nr; i++) {
                const __m512 sv = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, sums + (size_t)(r0 + i) * c + j));
                acc[i] = _mm512_mul_ps(_mm512_mul_ps(sv, _mm512_set1_ps(rs[r0 + i])), cv);
            }
            for (int t = 0; t < k; t++) {
                const __m512 w = _mm512_maskz_loadu_ps(m, wo + (size_t)t * c + j);
                for (int i = 0; i < nr; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(xo[(size_t)(r0 + i) * k + t]), w, acc[i]);
            }
            for (int i = 0; i < nr; i++) {
                float *dst = out + (size_t)(r0 + i) * c + j;
                __m512 v = acc[i];
                if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), v);
                _mm512_mask_storeu_ps(dst, m, v);
            }
        }
    }
}
#endif

void finch_scale_sums_outliers(const int32_t *sums, int rows, int c, const float *row_scales, const float *column_scales,
                               const float *xo, int k, const float *wo, float *out, int accumulate) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) {
        scale_sums_outliers_avx512(sums, rows, c, row_scales, column_scales, xo, k, wo, out, accumulate);
        return;
    }
#endif
    scale_sums_outliers_portable(sums, rows, c, row_scales, column_scales, xo, k, wo, out, accumulate);
}

void finch_quantize_rows_s8_split(const float *x, int rows, int c, const float *kept, const int32_t *columns, int k,
                                  int8_t *q, float *scales, float *xo) {
#if defined(__x86_64__)
    int wide = finch_cpu_avx512_level() > 0;
#else
    int wide = 0;
#endif
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * c;
        quantize_row(row, kept, c, wide, q + (size_t)r * c, scales + r);
        for (int t = 0; t < k; t++) xo[(size_t)r * k + t] = row[columns[t]];   // the row is in cache
    }
}

void finch_gather_weight_columns(const int8_t *w, int rows, int c, const float *scales, const int32_t *columns, int k,
                                 float *out, size_t ldo) {
    for (int o = 0; o < rows; o++) {
        const int8_t *row = w + (size_t)o * c;
        for (int t = 0; t < k; t++) out[(size_t)t * ldo + o] = (float)row[columns[t]] * scales[o];
    }
}

void finch_gather_weight_rows(const int8_t *w, int c, const float *scales, const int32_t *rows, int k, int c0, int c1, float *out) {
    for (int t = 0; t < k; t++) {
        const int8_t *row = w + (size_t)rows[t] * c;
        const float s = scales[rows[t]];
        float *dst = out + (size_t)t * c;
        for (int j = c0; j < c1; j++) dst[j] = (float)row[j] * s;
    }
}

// --- the median column maximum (Hoare's selection, in place) ---

float finch_select_nth(float *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) { float t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return a[k];
}

// --- column maxima (the outlier columns of Int8Product) ---

static void column_absmax_portable(const float *x, int rows, int c, size_t ld, const float *f, float *out) {
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * ld;
        for (int j = 0; j < c; j++) {
            float v = fabsf(f ? row[j] * f[j] : row[j]);
            out[j] = v > out[j] ? v : out[j];
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void column_absmax_avx512(const float *x, int rows, int c, size_t ld, const float *f, float *out) {
    int j = 0;
    for (; j + 64 <= c; j += 64) {   // 64 columns in registers across all rows
        __m512 m0 = _mm512_loadu_ps(out + j), m1 = _mm512_loadu_ps(out + j + 16);
        __m512 m2 = _mm512_loadu_ps(out + j + 32), m3 = _mm512_loadu_ps(out + j + 48);
        for (int r = 0; r < rows; r++) {
            const float *row = x + (size_t)r * ld + j;
            __m512 v0 = _mm512_loadu_ps(row), v1 = _mm512_loadu_ps(row + 16);
            __m512 v2 = _mm512_loadu_ps(row + 32), v3 = _mm512_loadu_ps(row + 48);
            if (f) {
                v0 = _mm512_mul_ps(v0, _mm512_loadu_ps(f + j)); v1 = _mm512_mul_ps(v1, _mm512_loadu_ps(f + j + 16));
                v2 = _mm512_mul_ps(v2, _mm512_loadu_ps(f + j + 32)); v3 = _mm512_mul_ps(v3, _mm512_loadu_ps(f + j + 48));
            }
            // max(v, m) with m second: a NaN value leaves m (as the portable loop does)
            m0 = _mm512_max_ps(_mm512_abs_ps(v0), m0); m1 = _mm512_max_ps(_mm512_abs_ps(v1), m1);
            m2 = _mm512_max_ps(_mm512_abs_ps(v2), m2); m3 = _mm512_max_ps(_mm512_abs_ps(v3), m3);
        }
        _mm512_storeu_ps(out + j, m0); _mm512_storeu_ps(out + j + 16, m1);
        _mm512_storeu_ps(out + j + 32, m2); _mm512_storeu_ps(out + j + 48, m3);
    }
    if (j < c) column_absmax_portable(x + j, rows, c - j, ld, f ? f + j : 0, out + j);
}
#endif

void finch_column_absmax(const float *x, int rows, int c, size_t ld, const float *factors, float *out) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { column_absmax_avx512(x, rows, c, ld, factors, out); return; }
#endif
    column_absmax_portable(x, rows, c, ld, factors, out);
}
