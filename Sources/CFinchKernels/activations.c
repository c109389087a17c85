// Elementwise kernels: exp-based activations and softmax, vectorized with an AVX-512 exp
// (range reduction to [-ln2/2, ln2/2], degree-6 polynomial: within ~2 ulp of expf).
#include "CFinchKernels.h"
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>

#include "exp512.h"

__attribute__((target("avx512f")))
static void silu_mul_avx512(float *h, const float *g, const float *u, size_t n) {
    size_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_storeu_ps(h + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/// In-place softmax; returns the log-sum-exp of the input values (max + log Σ e^(x − max)).
__attribute__((target("avx512f")))
static float softmax_avx512(float *x, size_t n) {
    size_t i = 0;
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    float m = _mm512_reduce_max_ps(mv);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m512 mb = _mm512_set1_ps(m);
    __m512 sv = _mm512_setzero_ps();
    float s = 0;
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mb));
        _mm512_storeu_ps(x + i, e);
        sv = _mm512_add_ps(sv, e);
    }
    for (; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    s += _mm512_reduce_add_ps(sv);
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / s;
    return m + logf(s);
}

__attribute__((target("avx512f")))
static float logsumexp_avx512(const float *x, size_t n) {
    size_t i = 0;
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    if (i < n) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << (n - i)) - 1), x + i));
    const float m = _mm512_reduce_max_ps(mv);
    if (m == INFINITY || m == -INFINITY) return m;
    const __m512 mb = _mm512_set1_ps(m);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= n; i += 32) {
        s0 = _mm512_add_ps(s0, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mb)));
        s1 = _mm512_add_ps(s1, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), mb)));
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mb));
        s0 = _mm512_mask_add_ps(s0, k, s0, e);
    }
    return m + logf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
}

__attribute__((target("avx512f")))
static void exp_shift_avx512(float *y, const float *x, float shift, float scale, size_t n, int accumulate) {
    const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), sh)), sc);
        if (accumulate) e = _mm512_add_ps(e, _mm512_maskz_loadu_ps(k, y + i));
        _mm512_mask_storeu_ps(y + i, k, e);
    }
}

__attribute__((target("avx512f")))
static void silu_mul_backward_avx512(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(k, g + i), hv = _mm512_maskz_loadu_ps(k, dh + i);
        __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        __m512 silu = _mm512_mul_ps(gv, sig);
        // silu'(g) = σ·(1 + g·(1 − σ)) = σ + silu − silu·σ
        __m512 dsilu = _mm512_fnmadd_ps(silu, sig, _mm512_add_ps(sig, silu));
        __m512 dgv = _mm512_fmadd_ps(_mm512_mul_ps(hv, _mm512_maskz_loadu_ps(k, u + i)), dsilu, _mm512_maskz_loadu_ps(k, dg + i));
        __m512 duv = _mm512_fmadd_ps(hv, silu, _mm512_maskz_loadu_ps(k, du + i));
        _mm512_mask_storeu_ps(dg + i, k, dgv);
        _mm512_mask_storeu_ps(du + i, k, duv);
    }
}
#endif

void finch_silu_mul(float *h, const float *gate, const float *up, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { silu_mul_avx512(h, gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) h[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void finch_softmax(float *x, size_t n) {
    (void)finch_softmax_lse(x, n);
}

float finch_softmax_lse(float *x, size_t n) {
    if (n == 0) return -INFINITY;
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) return softmax_avx512(x, n);
#endif
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (size_t i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    for (size_t i = 0; i < n; i++) x[i] *= 1.0f / s;
    return m + logf(s);
}

float finch_logsumexp(const float *x, size_t n) {
    if (n == 0) return -INFINITY;
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) return logsumexp_avx512(x, n);
#endif
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == INFINITY || m == -INFINITY) return m;
    float s = 0;
    for (size_t i = 0; i < n; i++) s += expf(x[i] - m);
    return m + logf(s);
}

void finch_exp_shift(float *y, const float *x, float shift, float scale, size_t n, int accumulate) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { exp_shift_avx512(y, x, shift, scale, n, accumulate); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float e = expf(x[i] - shift) * scale;
        y[i] = accumulate ? y[i] + e : e;
    }
}

void finch_silu_mul_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n) {
#if defined(__x86_64__)
    if (finch_cpu_avx512_level() > 0) { silu_mul_backward_avx512(dgate, dup, dh, gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-gate[i])), silu = gate[i] * sig;
        dgate[i] += dh[i] * up[i] * (sig + silu - silu * sig);
        dup[i] += dh[i] * silu;
    }
}
