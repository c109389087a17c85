#include "CFinchKernels.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Blockwise 4-bit quantization of full blocks (bitsandbytes' quantize_4bit): per block the
// absmax m (NaNs skipped), each value times 1 / max(m, 1e-38), clamped to [-1, 1] (a NaN stays
// NaN), its bucket = the number of the 15 sorted midpoints below it (torch.bucketize, a NaN
// gives 0), mapped through `order` to the code's nibble; element 2j is the high nibble of byte j.

static inline float clamp1(float s) {   // Swift's min(max(s, -1), 1): NaN passes through
    s = (-1.0f >= s) ? -1.0f : s;
    return (1.0f < s) ? 1.0f : s;
}

static inline uint8_t bucket(float s, const float *bounds, const uint8_t *order) {
    int i = 0;
    while (i < 15 && bounds[i] < s) i++;
    return order[i];
}

static void quant4_scalar(uint8_t *packed, float *absmax, const float *src, size_t blocks, size_t blocksize,
                          const float *bounds, const uint8_t *order) {
    for (size_t b = 0; b < blocks; b++) {
        const float *x = src + b * blocksize;
        float m = 0;
        for (size_t i = 0; i < blocksize; i++) { float a = fabsf(x[i]); m = (a >= m) ? a : m; }
        absmax[b] = m;
        float r = 1.0f / (m > 1e-38f ? m : 1e-38f);
        uint8_t *d = packed + b * blocksize / 2;
        for (size_t i = 0; i < blocksize; i += 2)
            d[i / 2] = (uint8_t)(bucket(clamp1(x[i] * r), bounds, order) << 4 | bucket(clamp1(x[i + 1] * r), bounds, order));
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quant4_avx512(uint8_t *packed, float *absmax, const float *src, size_t blocks, size_t blocksize,
                          const float *bounds, const uint8_t *order) {
    __m512 bv[15];
    for (int j = 0; j < 15; j++) bv[j] = _mm512_set1_ps(bounds[j]);
    int32_t ord[16];
    for (int j = 0; j < 16; j++) ord[j] = order[j];
    const __m512i table = _mm512_loadu_si512(ord);
    const __m512 one = _mm512_set1_ps(1.0f), minusOne = _mm512_set1_ps(-1.0f);
    const __m512i ones = _mm512_set1_epi32(1);
    const __m128i weights = _mm_set1_epi16(0x0110);   // bytes (16, 1): even element * 16 + odd element
    for (size_t b = 0; b < blocks; b++) {
        const float *x = src + b * blocksize;
        __m512 mv = _mm512_setzero_ps();
        for (size_t i = 0; i < blocksize; i += 16)   // max(|x|, m) keeps m when |x| is NaN
            mv = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), mv);
        float m = _mm512_reduce_max_ps(mv);
        absmax[b] = m;
        const __m512 r = _mm512_set1_ps(1.0f / (m > 1e-38f ? m : 1e-38f));
        uint8_t *d = packed + b * blocksize / 2;
        for (size_t i = 0; i < blocksize; i += 16) {
            __m512 s = _mm512_mul_ps(_mm512_loadu_ps(x + i), r);
            s = _mm512_min_ps(one, _mm512_max_ps(minusOne, s));   // second operand returned for NaN: NaN kept
            __m512i count = _mm512_setzero_si512();
            for (int j = 0; j < 15; j++)
                count = _mm512_mask_add_epi32(count, _mm512_cmp_ps_mask(bv[j], s, _CMP_LT_OQ), count, ones);
            __m128i nib = _mm512_cvtepi32_epi8(_mm512_permutexvar_epi32(count, table));
            __m128i pairs = _mm_maddubs_epi16(nib, weights);
            _mm_storel_epi64((__m128i *)(d + i / 2), _mm_packus_epi16(pairs, pairs));
        }
    }
}
#endif

void finch_quant4_blocks(uint8_t *packed, float *absmax, const float *src, size_t blocks, size_t blocksize,
                         const float *bounds, const uint8_t *order) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0 && blocksize % 16 == 0) {
        quant4_avx512(packed, absmax, src, blocks, blocksize, bounds, order);
        return;
    }
#endif
    quant4_scalar(packed, absmax, src, blocks, blocksize, bounds, order);
}
