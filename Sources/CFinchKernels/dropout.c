#include "CFinchKernels.h"

int finch_cpu_has_avx2(void);

// Counter-based dropout masks: element i of a call keyed `key` is kept when a 32-bit hash of
// (key, i) — murmur3's finalizer over i·φ + seed — is at or above p·2^32 (in 24 bits).
// Plain 32-bit integer arithmetic, so the compiler vectorizes it (AVX2 / AVX-512).

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16; h *= 0x85EBCA6Bu;
    h ^= h >> 13; h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static inline uint32_t seed32(uint64_t key) { return fmix32((uint32_t)key ^ fmix32((uint32_t)(key >> 32) + 0x9E3779B9u)); }

static inline uint32_t threshold(float p) {
    double t = (double)p * 16777216.0;
    return t >= 16777216.0 ? 16777216u : (uint32_t)t;
}

static inline __attribute__((always_inline))
void dropout_body(float *out, const float *x, size_t n, size_t offset, float p, uint64_t key, int accumulate) {
    const uint32_t s = seed32(key), t = threshold(p);
    const float scale = 1.0f / (1.0f - p);
    const uint32_t base = (uint32_t)offset;
    if (accumulate) {
        for (size_t i = 0; i < n; i++) {
            uint32_t h = fmix32((base + (uint32_t)i) * 0x9E3779B1u + s) >> 8;
            out[i] += h >= t ? x[i] * scale : 0.0f;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t h = fmix32((base + (uint32_t)i) * 0x9E3779B1u + s) >> 8;
            out[i] = h >= t ? x[i] * scale : 0.0f;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void dropout_avx512(float *out, const float *x, size_t n, size_t offset, float p, uint64_t key, int accumulate) {
    dropout_body(out, x, n, offset, p, key, accumulate);
}
__attribute__((target("avx2")))
static void dropout_avx2(float *out, const float *x, size_t n, size_t offset, float p, uint64_t key, int accumulate) {
    dropout_body(out, x, n, offset, p, key, accumulate);
}
#endif

void finch_dropout(float *out, const float *x, size_t n, size_t offset, float p, uint64_t key, int accumulate) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { dropout_avx512(out, x, n, offset, p, key, accumulate); return; }
    if (finch_cpu_has_avx2()) { dropout_avx2(out, x, n, offset, p, key, accumulate); return; }
#endif
    dropout_body(out, x, n, offset, p, key, accumulate);
}
