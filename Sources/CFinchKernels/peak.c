// Dimension letters: none (a throughput probe).
//
// The arithmetic peak of one core, measured: twelve independent multiply-add chains (enough to
// cover the FMA latency on two ports) run for `iterations` rounds. f32: vfmadd231ps (AVX-512: 32
// flops per instruction; AVX2: 16); bf16: vdpbf16ps (64 flops: 32 bf16 pairs multiplied and added
// into 16 f32 sums). Returns the flops done; the caller times it.
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
