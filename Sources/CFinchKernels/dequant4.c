#include "CFinchKernels.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Blockwise 4-bit dequantization (bitsandbytes' layout): element e of the flattened tensor is
// the high nibble of byte e/2 when e is even, the low nibble when odd; its value is
// code[nibble] · absmax[e / blocksize] in float32 (one rounding, as bitsandbytes does).

static void dequant4_scalar(float *out, const uint8_t *packed, const float *absmax, const float *code,
                            size_t blocksize, size_t start, size_t count) {
    for (size_t i = 0; i < count; i++) {
        size_t e = start + i;
        uint8_t byte = packed[e >> 1];
        uint8_t q = (e & 1) ? (byte & 15) : (byte >> 4);
        out[i] = code[q] * absmax[e / blocksize];
    }
}

#if defined(__x86_64__)
// 32 elements (16 bytes) per step: nibbles widened to 32-bit lanes, looked up in the 16-entry
// table held in one register (vpermps), interleaved back to element order, scaled.
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void dequant4_avx512(float *out, const uint8_t *packed, const float *absmax, const float *code,
                            size_t blocksize, size_t start, size_t count) {
    size_t e = start, end = start + count;
    size_t head = (32 - (e & 31)) & 31;
    if (head > count) head = count;
    dequant4_scalar(out, packed, absmax, code, blocksize, e, head);
    out += head; e += head;
    if (blocksize % 32 == 0) {
        const __m512 table = _mm512_loadu_ps(code);
        const __m512i low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        const __m512i fifteen = _mm512_set1_epi32(15);
        for (; e + 32 <= end; e += 32, out += 32) {
            __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(packed + e / 2)));
            __m512 vh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
            __m512 vl = _mm512_permutexvar_ps(_mm512_and_si512(b, fifteen), table);
            __m512 s = _mm512_set1_ps(absmax[e / blocksize]);
            _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_permutex2var_ps(vh, low, vl), s));
            _mm512_storeu_ps(out + 16, _mm512_mul_ps(_mm512_permutex2var_ps(vh, high, vl), s));
        }
    }
    dequant4_scalar(out, packed, absmax, code, blocksize, e, end - e);
}
#endif

void finch_dequant4_f32(float *out, const uint8_t *packed, const float *absmax, const float *code,
                        size_t blocksize, size_t start, size_t count) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { dequant4_avx512(out, packed, absmax, code, blocksize, start, count); return; }
#endif
    dequant4_scalar(out, packed, absmax, code, blocksize, start, count);
}
