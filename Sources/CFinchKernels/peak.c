// Dimension letters: none (a throughput probe).
//
// The arithmetic peak of one core, measured: twelve independent multiply-add chains (enough to
// cover the FMA latency on two ports) run for `iterations` rounds. f32: vfmadd231ps (AVX-512: 32
// flops per instruction; AVX2: 16); bf16: vdpbf16ps (64 flops: 32 bf16 pairs multiplied and added
// into 16 f32 sums); int8: vpdpbusd (AVX512-VNNI: 64 u8 × s8 pairs into 16 s32 sums, 128 ops;
// AVX-VNNI: 64 ops) or, without VNNI, AVX2's three-instruction u8 × s8 dot (64 ops). Returns the
// operations done; the caller times it.
#include "CFinchKernels.h"
#include <immintrin.h>

#define CHAINS 12

__attribute__((target("avx512f")))
static double peak_f32_avx512(long iterations, float *sink) {
    __m512 acc[CHAINS];
    const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    __m512 s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm512_add_ps(s, acc[j]);
    *sink = _mm512_reduce_add_ps(s);
    return (double)iterations * CHAINS * 32;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static double peak_bf16_avx512(long iterations, float *sink) {
    __m512 acc[CHAINS];
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0x3380);   // 1.0, ~6e-8
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    __m512 s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm512_add_ps(s, acc[j]);
    *sink = _mm512_reduce_add_ps(s);
    return (double)iterations * CHAINS * 64;
}

__attribute__((target("avx2,fma")))
static double peak_f32_avx2(long iterations, float *sink) {
    __m256 acc[CHAINS];
    const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    __m256 s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm256_add_ps(s, acc[j]);
    float v[8];
    _mm256_storeu_ps(v, s);
    *sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return (double)iterations * CHAINS * 16;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static double peak_int8_avx512vnni(long iterations, int32_t *sink) {
    __m512i acc[CHAINS];
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_set1_epi32(j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
    __m512i s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm512_add_epi32(s, acc[j]);
    *sink = _mm512_reduce_add_epi32(s);
    return (double)iterations * CHAINS * 128;
}

__attribute__((target("avx2,avxvnni")))
static double peak_int8_avxvnni(long iterations, int32_t *sink) {
    __m256i acc[CHAINS];
    const __m256i a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(1);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_epi32(j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_dpbusd_avx_epi32(acc[j], a, b);
    __m256i s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm256_add_epi32(s, acc[j]);
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, s);
    *sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return (double)iterations * CHAINS * 64;
}

__attribute__((target("avx2")))
static double peak_int8_avx2(long iterations, int32_t *sink) {
    __m256i acc[CHAINS];
    const __m256i a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_epi32(j);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < CHAINS; j++)
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    __m256i s = acc[0];
    for (int j = 1; j < CHAINS; j++) s = _mm256_add_epi32(s, acc[j]);
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, s);
    *sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return (double)iterations * CHAINS * 64;
}

double finch_peak_probe_int8(long iterations) {
    int32_t sink = 0;
    double ops = 0;
#if defined(__x86_64__)
    int dot = finch_cpu_int8_dot();
    if (dot == 2) ops = peak_int8_avx512vnni(iterations, &sink);
    else if (dot == 1) ops = peak_int8_avxvnni(iterations, &sink);
    else if (finch_cpu_has_avx2()) ops = peak_int8_avx2(iterations, &sink);
#endif
    volatile int32_t keep = sink;
    (void)keep;
    return ops;
}

double finch_peak_probe(int bf16, long iterations) {
    float sink = 0;
    double flops = 0;
#if defined(__x86_64__)
    int level = finch_cpu_avx512_level();
    if (bf16) {
        if (level >= 2) flops = peak_bf16_avx512(iterations, &sink);
    } else if (level >= 1) {
        flops = peak_f32_avx512(iterations, &sink);
    } else if (finch_cpu_has_avx2()) {
        flops = peak_f32_avx2(iterations, &sink);
    }
#endif
    volatile float keep = sink;
    (void)keep;
    return flops;
}
