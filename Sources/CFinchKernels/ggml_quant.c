// llama.cpp's quantized block types, written as its reference quantizers write them (the path
// llama-quantize takes without an importance matrix), so that a GGUF Finch exports holds the
// same bytes llama-quantize would write from the same f32 weights.
//
// Every step is plain IEEE single precision in the reference's order of operations, with no
// contraction into FMAs (which would round differently); half-precision scales round to nearest
// even as ggml's FP32→FP16 does. Block layouts (little-endian):
//   Q8_0  34 B: f16 d, int8 q[32]                       x = d·q
//   Q4_0  18 B: f16 d, u8 qs[16] (lo: x[j], hi: x[j+16]) x = d·(q − 8)
//   Q5_0  22 B: f16 d, u32 qh (bit 4 of each q), qs[16]   x = d·(q − 16)
//   Q4_K 144 B: f16 d, f16 dmin, u8 scales[12] (8 six-bit scale/min pairs), qs[128]
//               x = d·sc_j·q − dmin·m_j over 8 sub-blocks of 32
//   Q6_K 210 B: ql[128], qh[64], int8 scales[16], f16 d  x = d·sc_j·(q − 32) over 16 sub-blocks of 16
#pragma STDC FP_CONTRACT OFF
#include "CFinchKernels.h"
#include <math.h>
#include <string.h>

// Nearest integer, ties to even, for |f| < 2^22 (adding 1.5·2^23 leaves the integer in the low mantissa bits).
static inline int near_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline void put_half(uint8_t *p, float f) {
    _Float16 h = (_Float16)f;
    memcpy(p, &h, 2);
}

static inline float get_half(const uint8_t *p) {
    _Float16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

// --- 32-element blocks ---

static void block_q8_0(const float *x, uint8_t *out) {
    float amax = 0;
    for (int j = 0; j < 32; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put_half(out, d);
    for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

// The value of largest magnitude (the first of equals), sign kept.
static inline float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) { float a = fabsf(x[j]); if (amax < a) { amax = a; max = x[j]; } }
    return max;
}

static void block_q4_0(const float *x, uint8_t *out) {
    const float d = signed_absmax(x, 32) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put_half(out, d);
    for (int j = 0; j < 16; j++) {
        int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + 16] * id + 8.5f);
        if (lo > 15) lo = 15;
        if (hi > 15) hi = 15;
        out[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

static void block_q5_0(const float *x, uint8_t *out) {
    const float d = signed_absmax(x, 32) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put_half(out, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (int8_t)(x[j] * id + 16.5f), hi = (int8_t)(x[j + 16] * id + 16.5f);
        if (lo > 31) lo = 31;
        if (hi > 31) hi = 31;
        out[6 + j] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    for (int b = 0; b < 4; b++) out[2 + b] = (uint8_t)(qh >> (8 * b));
}

// --- Q4_K ---

// Levels L in 0...nmax with scale and min (x ≈ scale·L − min) for one sub-block, minimising the
// weighted squared error over a grid of nstep + 1 trial scales around nmax / (max − min), each
// refined by weighted least squares (the min kept ≤ 0). Returns the scale; *neg_min = −min.
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           float rmin, float rdelta, int nstep) {
    uint8_t trial[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = near_int(iscale * (x[i] - min));
        l = l < 0 ? 0 : l > nmax ? nmax : l;
        L[i] = (uint8_t)l;
        float diff = scale * L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    for (int s = 0; s <= nstep; s++) {
        iscale = (rmin + rdelta * s + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = near_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float s_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            float s_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (s_min > 0) { s_min = 0; s_scale = sum_xl / sum_l2; }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = s_scale * trial[i] + s_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                memcpy(L, trial, (size_t)n);
                best = err;
                scale = s_scale;
                min = s_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

// Sub-block j's six-bit scale and min from the 12 packed bytes.
static inline void unpack_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}

static void block_q4_K(const float *x, uint8_t *out) {
    uint8_t L[256];
    float scales[8], mins[8], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        scales[j] = fit_scale_min(32, 15, xs, w, L + 32 * j, &mins[j], -1.f, 0.1f, 20);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *packed = out + 4;
    memset(packed, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)near_int(inv_scale * scales[j]), lm = (uint8_t)near_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) { packed[j] = ls; packed[j + 4] = lm; }
        else {
            packed[j + 4] = (uint8_t)((ls & 15) | ((lm & 15) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    put_half(out, max_scale / 63.f);
    put_half(out + 2, max_min / 63.f);
    const float d = get_half(out), dmin = get_half(out + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        unpack_scale_min(j, packed, &sc, &m);
        const float ds = d * sc;
        if (ds == 0) continue;   // keeps the levels of the fit
        const float dm = dmin * m;
        for (int i = 0; i < 32; i++) {
            int l = near_int((x[32 * j + i] + dm) / ds);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > 15 ? 15 : l);
        }
    }
    uint8_t *qs = out + 16;
    for (int j = 0; j < 256; j += 64, qs += 32)
        for (int l = 0; l < 32; l++) qs[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

// --- Q6_K ---

// Signed levels in −nmax ... nmax−1 (stored + nmax) and a scale for one sub-block: the scale
// −nmax / max, refined by least squares weighted by x², then 18 trial scales around it.
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > amax) { amax = a; max = x[i]; } }
    if (amax < 1e-15f) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = near_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int s = -9; s <= 9; s++) {
        if (s == 0) continue;
        iscale = -(nmax + 0.1f * s) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = near_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = near_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void block_q6_K(const float *x, uint8_t *out) {
    int8_t L[256];
    float scales[16];
    float max_scale = 0, max_abs = 0;
    for (int b = 0; b < 16; b++) {
        scales[b] = fit_symmetric(16, 32, x + 16 * b, L + 16 * b);
        float a = fabsf(scales[b]);
        if (a > max_abs) { max_abs = a; max_scale = scales[b]; }
    }
    uint8_t *ql = out, *qh = out + 128;
    int8_t *sc = (int8_t *)(out + 192);
    if (max_abs < 1e-15f) {
        memset(out, 0, 210);
        return;
    }
    const float iscale = -128.f / max_scale;
    put_half(out + 208, 1 / iscale);
    for (int b = 0; b < 16; b++) {
        int v = near_int(iscale * scales[b]);
        sc[b] = (int8_t)(v > 127 ? 127 : v);
    }
    const float d = get_half(out + 208);
    for (int b = 0; b < 16; b++) {
        const float ds = d * sc[b];
        if (ds == 0) continue;   // keeps the levels of the fit
        for (int i = 0; i < 16; i++) {
            int l = near_int(x[16 * b + i] / ds);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            L[16 * b + i] = (int8_t)(l + 32);
        }
    }
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 15, q2 = L[j + l + 32] & 15, q3 = L[j + l + 64] & 15, q4 = L[j + l + 96] & 15;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
    }
}

int finch_ggml_quantize(int type, const float *x, uint8_t *out, int64_t blocks) {
    void (*block)(const float *, uint8_t *);
    int n, size;
    switch (type) {
    case 8: block = block_q8_0; n = 32; size = 34; break;
    case 2: block = block_q4_0; n = 32; size = 18; break;
    case 6: block = block_q5_0; n = 32; size = 22; break;
    case 12: block = block_q4_K; n = 256; size = 144; break;
    case 14: block = block_q6_K; n = 256; size = 210; break;
    default: return 0;
    }
    for (int64_t b = 0; b < blocks; b++) block(x + b * n, out + b * size);
    return 1;
}
