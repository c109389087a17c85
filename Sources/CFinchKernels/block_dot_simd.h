// The x86-64 body of block_dot.c, included once per way of summing u8 × s8 pairs: BD_TARGET
// (the instruction sets), BD_NAME(x) (the functions' suffix) and BD_DPBUSD(acc, u, s) (acc + the
// sums of 4 adjacent u8 × s8 products, into 8 int32 lanes: lane i holds bytes 4i..4i+3, so lanes
// 0-3 cover a group's first 16 values and lanes 4-7 its last 16).

// Adds group g's products to every activation row: u the weights as u8 (signed: s8 whose
// sign moves onto the activations), scale the weights' f32 scale per lane, mn · the group's
// activation sum the minimum term.
#define BD_GROUP(u_, signed_, scale_, mn_, g_)                                                     \
    do {                                                                                          \
        const __m256i w_ = (u_);                                                                  \
        const __m256i uw_ = (signed_) ? _mm256_abs_epi8(w_) : w_;                                 \
        for (int m = 0; m < M; m++) {                                                             \
            __m256i x_ = _mm256_loadu_si256((const __m256i *)(a->xq + (size_t)m * K + 32 * (g_)));  \
            if (signed_) x_ = _mm256_sign_epi8(x_, w_);                                           \
            const __m256i d_ = BD_DPBUSD(_mm256_setzero_si256(), uw_, x_);                        \
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d_),                                      \
                                     _mm256_mul_ps((scale_), _mm256_set1_ps(a->xd[m * G + (g_)])), acc[m]); \
            if (mn_ != 0) off[m] += (mn_) * a->xs[m * G + (g_)];                                  \
        }                                                                                         \
    } while (0)

__attribute__((target(BD_TARGET)))
static inline __m256i BD_NAME(nibbles)(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
}

// 16 in byte j where bit j of bits is set, else 0.
__attribute__((target(BD_TARGET)))
static inline __m256i BD_NAME(high_bits)(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i mask = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask), _mm256_set1_epi8(16));
}

__attribute__((target(BD_TARGET)))
static inline float BD_NAME(hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The rows [n0, n1) for M activation rows, M a constant where it is inlined (so the
// accumulators stay in registers).
__attribute__((target(BD_TARGET), always_inline))
static inline void BD_NAME(rows_simd_m)(const struct block_args *a, int n0, int n1, const int M) {
    const int G = a->K / 32, K = a->K;
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int n = n0; n < n1; n++) {
        const size_t stored = (size_t)(a->order ? a->order[n] : n);
        const uint8_t *row = a->w + stored * a->row_bytes;
        __m256 acc[4];
        float off[4] = {0, 0, 0, 0};
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        switch (a->type) {
        case T_Q4_0:
            for (int g = 0; g < G; g++) {
                const uint8_t *b = row + (size_t)g * 18;
                const float d = half_at(b);
                BD_GROUP(BD_NAME(nibbles)(b + 2), 0, _mm256_set1_ps(d), -8 * d, g);
            }
            break;
        case T_Q4_1:
            for (int g = 0; g < G; g++) {
                const uint8_t *b = row + (size_t)g * 20;
                BD_GROUP(BD_NAME(nibbles)(b + 4), 0, _mm256_set1_ps(half_at(b)), half_at(b + 2), g);
            }
            break;
        case T_Q5_0:
            for (int g = 0; g < G; g++) {
                const uint8_t *b = row + (size_t)g * 22;
                const float d = half_at(b);
                const __m256i q = _mm256_or_si256(BD_NAME(nibbles)(b + 6), BD_NAME(high_bits)(u32_at(b + 2)));
                BD_GROUP(q, 0, _mm256_set1_ps(d), -16 * d, g);
            }
            break;
        case T_Q5_1:
            for (int g = 0; g < G; g++) {
                const uint8_t *b = row + (size_t)g * 24;
                const __m256i q = _mm256_or_si256(BD_NAME(nibbles)(b + 8), BD_NAME(high_bits)(u32_at(b + 4)));
                BD_GROUP(q, 0, _mm256_set1_ps(half_at(b)), half_at(b + 2), g);
            }
            break;
        case T_Q8_0:
            for (int g = 0; g < G; g++) {
                const uint8_t *b = row + (size_t)g * 34;
                BD_GROUP(_mm256_loadu_si256((const __m256i *)(b + 2)), 1, _mm256_set1_ps(half_at(b)), 0.0f, g);
            }
            break;
        case T_Q4_K: case T_Q5_K: {
            const int five = a->type == T_Q5_K;
            for (int sb = 0; sb < G / 8; sb++) {
                const uint8_t *b = row + (size_t)sb * (five ? 176 : 144);
                const float d = half_at(b), dmin = half_at(b + 2);
                const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
                const uint8_t *qs = b + (five ? 48 : 16);
                for (int c = 0; c < 4; c++) {
                    const __m256i bytes = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                    for (int h = 0; h < 2; h++) {
                        const int j = 2 * c + h;
                        int s, mm;
                        scale_min_k4(b + 4, j, &s, &mm);
                        __m256i q = h ? _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4) : _mm256_and_si256(bytes, low4);
                        if (five)
                            q = _mm256_or_si256(q, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, j), 4),
                                                                    _mm256_set1_epi8(16)));
                        BD_GROUP(q, 0, _mm256_set1_ps(d * (float)s), -dmin * (float)mm, 8 * sb + j);
                    }
                }
            }
            break;
        }
        case T_Q6_K:
            for (int sb = 0; sb < G / 8; sb++) {
                const uint8_t *b = row + (size_t)sb * 210;
                const float d = half_at(b + 208);
                for (int hf = 0; hf < 2; hf++) {
                    const int8_t *scales = (const int8_t *)(b + 192) + 8 * hf;
                    const __m256i h2 = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * hf));
                    for (int s = 0; s < 4; s++) {
                        const __m256i l4 = _mm256_loadu_si256((const __m256i *)(b + 64 * hf + 32 * (s % 2)));
                        const __m256i lo = _mm256_and_si256(s / 2 ? _mm256_srli_epi16(l4, 4) : l4, low4);
                        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(h2, 2 * s), 4),
                                                            _mm256_set1_epi8(0x30));
                        const __m256i w = _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32));
                        const __m256 scale = _mm256_set_m128(_mm_set1_ps(d * (float)scales[2 * s + 1]),
                                                             _mm_set1_ps(d * (float)scales[2 * s]));
                        BD_GROUP(w, 1, scale, 0.0f, 8 * sb + 4 * hf + s);
                    }
                }
            }
            break;
        default: {   // int8 rows with one scale each
            const __m256 rs = _mm256_set1_ps(a->row_scales[stored]);
            for (int g = 0; g < G; g++) BD_GROUP(_mm256_loadu_si256((const __m256i *)(row + 32 * g)), 1, rs, 0.0f, g);
            break;
        }
        }
        float sum[4];
        for (int m = 0; m < M; m++) sum[m] = BD_NAME(hsum)(acc[m]) + off[m];
        store_rows(a, n, sum);
    }
}

__attribute__((target(BD_TARGET)))
static void BD_NAME(rows_simd)(const struct block_args *a, int n0, int n1) {
    switch (a->M) {
    case 1: BD_NAME(rows_simd_m)(a, n0, n1, 1); break;
    case 2: BD_NAME(rows_simd_m)(a, n0, n1, 2); break;
    case 3: BD_NAME(rows_simd_m)(a, n0, n1, 3); break;
    default: BD_NAME(rows_simd_m)(a, n0, n1, 4); break;
    }
}

#undef BD_GROUP
