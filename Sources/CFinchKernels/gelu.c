// GELU with the tanh approximation (PyTorch's gelu(approximate='tanh'), transformers'
// gelu_pytorch_tanh and gelu_new): gelu(x) = x/2 · (1 + tanh(β·(x + κ·x³))), β = √(2/π), κ = 0.044715,
// plain (GPT-2's MLP) and gated (Gemma's: gelu(gate) · up), forward and backward. The AVX-512
// path computes tanh(z) = 1 − 2 / (e^(2z) + 1) with the exp of activations.c's accuracy.
#include "CFinchKernels.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static const float kBeta = 0.7978845608028654f;   // √(2/π)
static const float kKappa = 0.044715f;

/// gelu(x) and, when d != NULL, gelu'(x) = ½(1 + t) + ½x·(1 − t²)·β·(1 + 3κx²), t = tanh(β(x + κx³)).
static inline float gelu_scalar(float x, float *d) {
    float inner = kBeta * (x + kKappa * x * x * x);
    float t = tanhf(inner);
    if (d) *d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kBeta * (1.0f + 3.0f * kKappa * x * x);
    return 0.5f * x * (1.0f + t);
}

#if defined(__x86_64__)
#include "exp512.h"


/// t = tanh(β(x + κx³)) for 16 lanes.
__attribute__((target("avx512f"), always_inline))
static inline __m512 gelu_tanh512(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 inner = _mm512_mul_ps(_mm512_set1_ps(kBeta), _mm512_fmadd_ps(_mm512_set1_ps(kKappa), x3, x));
    __m512 e = exp512(_mm512_add_ps(inner, inner));
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

/// mode 0: y = gelu(x) (u NULL); mode 1: y = gelu(x)·u.
__attribute__((target("avx512f")))
static void gelu_forward_avx512(float *y, const float *x, const float *u, size_t n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        __m512 g = _mm512_mul_ps(_mm512_mul_ps(half, xv), _mm512_add_ps(one, gelu_tanh512(xv)));
        if (u) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, u + i));
        _mm512_mask_storeu_ps(y + i, k, g);
    }
}

/// dx += dy·(u)·gelu'(x); with u, du += dy·gelu(x).
__attribute__((target("avx512f")))
static void gelu_backward_avx512(float *dx, float *du, const float *dy, const float *x, const float *u, size_t n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 beta = _mm512_set1_ps(kBeta), k3 = _mm512_set1_ps(3.0f * kKappa);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i), dyv = _mm512_maskz_loadu_ps(k, dy + i);
        __m512 t = gelu_tanh512(xv);
        __m512 onePlusT = _mm512_add_ps(one, t);
        __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(half, xv), onePlusT);
        __m512 sech2 = _mm512_fnmadd_ps(t, t, one);
        __m512 poly = _mm512_fmadd_ps(k3, _mm512_mul_ps(xv, xv), one);
        __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, xv), sech2), _mm512_mul_ps(beta, poly),
                                   _mm512_mul_ps(half, onePlusT));
        __m512 g = dyv;
        if (u) {
            __m512 uv = _mm512_maskz_loadu_ps(k, u + i);
            g = _mm512_mul_ps(dyv, uv);
            _mm512_mask_storeu_ps(du + i, k, _mm512_fmadd_ps(dyv, gelu, _mm512_maskz_loadu_ps(k, du + i)));
        }
        _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(g, d, _mm512_maskz_loadu_ps(k, dx + i)));
    }
}
#endif

void finch_gelu_tanh(float *y, const float *x, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { gelu_forward_avx512(y, x, NULL, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] = gelu_scalar(x[i], NULL);
}

void finch_gelu_tanh_backward(float *dx, const float *dy, const float *x, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { gelu_backward_avx512(dx, NULL, dy, x, NULL, n); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float d;
        (void)gelu_scalar(x[i], &d);
        dx[i] += dy[i] * d;
    }
}

void finch_gelu_tanh_mul(float *h, const float *gate, const float *up, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { gelu_forward_avx512(h, gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) h[i] = gelu_scalar(gate[i], NULL) * up[i];
}

void finch_gelu_tanh_mul_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                                  size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { gelu_backward_avx512(dgate, dup, dh, gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float d, g = gelu_scalar(gate[i], &d);
        dgate[i] += dh[i] * up[i] * d;
        dup[i] += dh[i] * g;
    }
}

// Exact GELU (PyTorch's gelu(approximate='none'), transformers' "gelu"): x · Φ(x), Φ the normal CDF.
void finch_gelu_erf(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void finch_gelu_erf_backward(float *dx, const float *dy, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
        float pdf = 0.3989422804014327f * expf(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}
