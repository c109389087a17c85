// bfloat16 <-> float32 conversion and small vector helpers.
#include "CFinchKernels.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline uint16_t f32_to_bf16_1(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void f32_to_bf16_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        // NaNs: keep the payload's top bits and set the quiet bit.
        __mmask16 nan = _mm512_cmp_ps_mask(_mm512_castsi512_ps(u), _mm512_castsi512_ps(u), _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
    for (; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void bf16_to_f32_avx512(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
    for (; i < n; i++) { uint32_t u = (uint32_t)src[i] << 16; memcpy(dst + i, &u, 4); }
}

__attribute__((target("avx512f")))
static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx512f")))
static void axpy_avx512(float *y, float a, const float *x, size_t n) {
    __m512 av = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

void finch_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { f32_to_bf16_avx512(dst, src, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

void finch_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { bf16_to_f32_avx512(dst, src, n); return; }
#endif
    for (size_t i = 0; i < n; i++) { uint32_t u = (uint32_t)src[i] << 16; memcpy(dst + i, &u, 4); }
}

float finch_dot_f32(const float *a, const float *b, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) return dot_avx512(a, b, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void finch_axpy_f32(float *y, float a, const float *x, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { axpy_avx512(y, a, x, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

// f32 values rounded to bf16 precision (round to nearest even, NaN kept quiet), still as f32:
// what a bf16 operand holds, widened. dst may be src.
#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void round_to_bf16_f32_avx512(float *dst, const float *src, size_t n) {
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i keep = _mm512_set1_epi32((int)0xffff0000u), quiet = _mm512_set1_epi32(0x400000);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        __mmask16 nan = _mm512_cmp_ps_mask(_mm512_castsi512_ps(u), _mm512_castsi512_ps(u), _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, quiet));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_and_si512(r, keep)));
    }
    for (; i < n; i++) {
        uint32_t u; memcpy(&u, src + i, 4);
        u = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        memcpy(dst + i, &u, 4);
    }
}
#endif

void finch_round_to_bf16_f32(float *dst, const float *src, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { round_to_bf16_f32_avx512(dst, src, n); return; }
#endif
    const uint32_t *s = (const uint32_t *)src;
    uint32_t *d = (uint32_t *)dst;
    for (size_t i = 0; i < n; i++) {   // branch-free, so that it vectorizes
        uint32_t u = s[i];
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        uint32_t nan = (u | 0x00400000u) & 0xffff0000u;
        d[i] = (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
    }
}
