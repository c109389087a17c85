#ifndef CFINCH_KERNELS_H
#define CFINCH_KERNELS_H
/// SIMD micro-kernels for Finch. Every entry point picks its widest code path at run time
/// (AVX-512, AVX2+FMA, portable C), so one binary runs on any x86-64 (or other) CPU.
#include <stdint.h>
#include <stddef.h>

/// 1 when the CPU supports AVX-512F, 2 when it also has AVX512-BF16, 0 otherwise.
int finch_cpu_avx512_level(void);
/// 1 when the CPU has AVX2 and FMA (or the forced kernel path allows them).
int finch_cpu_has_avx2(void);
/// The CPU's integer dot-product instructions (`vpdpbusd`: u8 × s8 pairs summed into s32):
/// 2 AVX512-VNNI, 1 AVX-VNNI (256-bit), 0 none (AVX2's vpmaddubsw / vpmaddwd pair instead).
int finch_cpu_int8_dot(void);
/// Makes every kernel use a narrower code path ("portable", "avx2", "avx512", "avx512bf16"),
/// for tests of the fallbacks; NULL restores detection. The caller must only force a path
/// the CPU supports (see finch_kernel_path / finch_cpu_avx512_level). Returns 0 for an unknown name.
int finch_force_kernel_path(const char *name);
/// Name of the code path the kernels use on this CPU ("avx512", "avx2", "portable").
const char *finch_kernel_path(void);

/// Makes OpenBLAS use the kernels of this CPU when it fell back to generic ones (see cpu.c); returns the
/// core in use. OPENBLAS_CORETYPE, when set, is respected. Call before the first BLAS call.
const char *finch_openblas_select_core(void);
/// Flops of a multiply-add loop on this thread for `iterations` rounds, to be timed by the caller: f32
/// (AVX-512 or AVX2 FMA) or, with `bf16`, AVX512-BF16 dot products (0 when the CPU has none).
double finch_peak_probe(int bf16, long iterations);
/// Integer operations (a multiply and an add per u8 × s8 pair) of a dot-product loop on this
/// thread for `iterations` rounds: AVX512-VNNI or AVX-VNNI `vpdpbusd`, else AVX2's
/// `vpmaddubsw` + `vpmaddwd` + `vpaddd` (0 without AVX2).
double finch_peak_probe_int8(long iterations);

/// q [R, C] = round(x ⊙ factors / s[r]) (to nearest even, within ±127) with s[r] = max |x[r, :] ⊙
/// factors| / 127 written to scales [R] (factors [C] may be NULL; an all-zero row: scale 1, zeros).
void finch_quantize_rows_s8(const float *x, int rows, int c, const float *factors, int8_t *q, float *scales);
/// out[j] = max(out[j], max over rows r of |x[r, j] · factors[j]|) for the C columns of x [R, ·] (row stride ld;
/// factors [C] may be NULL); a NaN value is passed over.
void finch_column_absmax(const float *x, int rows, int c, size_t ld, const float *factors, float *out);
/// out [R, C] (+)= sums [R, C] · row_scales[r] (· column_scales[c] when not NULL) + xo [R, K] · wo [K, C]: an
/// integer product's sums scaled back, with its outlier columns' f32 part added in the same pass (K may be 0).
void finch_scale_sums_outliers(const int32_t *sums, int rows, int c, const float *row_scales, const float *column_scales,
                               const float *xo, int k, const float *wo, float *out, int accumulate);
/// finch_quantize_rows_s8 of x ⊙ kept (kept: factors, 0 at the K outlier `columns`; may be NULL), and x's values
/// at those columns gathered as each row is quantized: xo [R, K] (K may be 0).
void finch_quantize_rows_s8_split(const float *x, int rows, int c, const float *kept, const int32_t *columns, int k,
                                  int8_t *q, float *scales, float *xo);
/// out [K, ·] (row stride ldo) = (w [O, C] at the K columns `columns`)ᵀ · scales[o]: an int8 weight's columns in
/// f32, transposed.
void finch_gather_weight_columns(const int8_t *w, int rows, int c, const float *scales, const int32_t *columns, int k,
                                 float *out, size_t ldo);
/// out [K, C] columns c0 ..< c1 = w [·, C] at the K rows `rows`, each times scales[row].
void finch_gather_weight_rows(const int8_t *w, int c, const float *scales, const int32_t *rows, int k, int c0, int c1, float *out);
/// The k-th smallest of a [N] (0-based; no NaN), reordering a.
float finch_select_nth(float *a, int n, int k);
/// The core OpenBLAS chose by itself when it loaded.
const char *finch_openblas_core_at_load(void);

/// Runs fn(ctx, tid, nthreads) on every thread of the OpenMP team that oneDNN uses
/// (found at run time; runs fn(ctx, 0, 1) when no OpenMP runtime is loaded).
/// Nested calls from inside a team run on the calling thread alone.
void finch_parallel_run(void (*fn)(void *ctx, int tid, int nthreads), void *ctx);
/// Threads a finch_parallel_run call uses.
int finch_max_threads(void);
/// Thread `tid` of `nthreads`' share [*begin, *end) of `n` rows, cut in slices of `align` rows
/// (so every share of a row-major matrix starts on an aligned row); empty when *begin >= *end.
void finch_row_share(int n, int align, int tid, int nthreads, int *begin, int *end);

/// dst[i] = bf16(src[i]) with round-to-nearest-even (NaN stays NaN).
void finch_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
/// dst[i] = float(src[i]).
void finch_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
/// f32 values rounded to bf16 precision (round to nearest even), kept as f32; dst may be src.
void finch_round_to_bf16_f32(float *dst, const float *src, size_t n);

/// y[M,N] (+)= x[M,K] · W[N,K]ᵀ for small M (decode), W f32, parallel over N.
/// ldx / ldy are the row strides of x and y. accumulate != 0 adds into y.
void finch_linear_small_f32(float *y, size_t ldy, const float *x, size_t ldx,
                            const float *w, int M, int N, int K, int accumulate);
/// Same with W in bfloat16 (f32 accumulation).
void finch_linear_small_bf16(float *y, size_t ldy, const float *x, size_t ldx,
                             const uint16_t *w, int M, int N, int K, int accumulate);
/// Single-thread dot product of two f32 vectors.
float finch_dot_f32(const float *a, const float *b, size_t n);
/// y[i] += a * x[i].
void finch_axpy_f32(float *y, float a, const float *x, size_t n);
/// h[i] = silu(gate[i]) * up[i] (silu(x) = x / (1 + e^-x)).
void finch_silu_mul(float *h, const float *gate, const float *up, size_t n);
/// In-place softmax of n values (max-subtracted, f32).
void finch_softmax(float *x, size_t n);
/// In-place softmax of n values that also returns their log-sum-exp, max + log Σ e^(x − max)
/// (what attention saves for its backward; -inf for n = 0).
float finch_softmax_lse(float *x, size_t n);
/// log Σ e^x[i] of n values (max-subtracted; -inf for n = 0, +inf if a value is +inf).
float finch_logsumexp(const float *x, size_t n);
/// y[i] = scale · e^(x[i] − shift), or y[i] += that when accumulate != 0. y may be x.
/// (Softmax probabilities from a saved log-sum-exp: shift = lse.)
void finch_exp_shift(float *y, const float *x, float shift, float scale, size_t n, int accumulate);
/// Backward of finch_silu_mul, accumulating: dgate[i] += dh[i]·up[i]·silu'(gate[i]),
/// dup[i] += dh[i]·silu(gate[i]), where silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
void finch_silu_mul_backward(float *dgate, float *dup, const float *dh, const float *gate,
                             const float *up, size_t n);
/// y[i] = gelu(x[i]) with the tanh approximation, x/2·(1 + tanh(√(2/π)(x + 0.044715x³))) (PyTorch's
/// gelu(approximate='tanh'), GPT-2's gelu_new). y may be x.
void finch_gelu_tanh(float *y, const float *x, size_t n);
/// Backward of finch_gelu_tanh, accumulating: dx[i] += dy[i]·gelu'(x[i]).
void finch_gelu_tanh_backward(float *dx, const float *dy, const float *x, size_t n);
/// y[i] = x[i] · Φ(x[i]), the exact GELU with the normal CDF (PyTorch's default gelu). y may be x.
void finch_gelu_erf(float *y, const float *x, size_t n);
/// Backward of finch_gelu_erf, accumulating: dx[i] += dy[i] · (Φ(x) + x·φ(x)).
void finch_gelu_erf_backward(float *dx, const float *dy, const float *x, size_t n);
/// h[i] = gelu(gate[i]) · up[i] (tanh approximation; Gemma's gated MLP).
void finch_gelu_tanh_mul(float *h, const float *gate, const float *up, size_t n);
/// Backward of finch_gelu_tanh_mul, accumulating: dgate[i] += dh[i]·up[i]·gelu'(gate[i]),
/// dup[i] += dh[i]·gelu(gate[i]).
void finch_gelu_tanh_mul_backward(float *dgate, float *dup, const float *dh, const float *gate,
                                  const float *up, size_t n);
/// Inverted dropout with a counter-based mask: out[i] (+)= x[i] / (1 − p) where element
/// offset + i of the call keyed `key` is kept, else 0 (+0). The mask is a pure function of
/// (key, offset + i), so a backward or recomputed forward regenerates it. `accumulate` != 0 adds.
void finch_dropout(float *out, const float *x, size_t n, size_t offset, float p, uint64_t key, int accumulate);

/// Quantizes `blocks` full blocks of `blocksize` floats to 4 bits (bitsandbytes' quantize_4bit):
/// absmax per block into `absmax`, nibbles (bucket of the 15 sorted midpoints `bounds`, mapped
/// through `order[16]`) packed two per byte, the even element high.
void finch_quant4_blocks(uint8_t *packed, float *absmax, const float *src, size_t blocks, size_t blocksize,
                         const float *bounds, const uint8_t *order);
/// Quantizes `blocks` consecutive blocks of floats to ggml type `type` (its ggml_type number:
/// 8 Q8_0, 2 Q4_0, 6 Q5_0 with 32 floats per block; 12 Q4_K, 14 Q6_K with 256) as llama.cpp's
/// reference quantizers do, writing the blocks back to back into `out`. Returns 0 (and writes
/// nothing) for another type.
int finch_ggml_quantize(int type, const float *x, uint8_t *out, int64_t blocks);
/// The `type` of finch_block_gemv_q8 for int8 rows [N, K] with one f32 scale per row (Int8Product's form).
#define FINCH_BLOCK_S8_ROWS (-1)
/// Activation rows x [M, K] (row stride ldx, K a multiple of 32) quantized for finch_block_gemv_q8 in
/// groups of 32: q [M, K] = round(x / d) within ±127, d [M, K/32] = max |group| / 127, s [M, K/32] =
/// d · Σ q (the group's sum, for the weights' minimum terms). A group holding a NaN or infinity gets d = s = NaN.
void finch_quantize_q8_groups(const float *x, size_t ldx, int M, int K, int8_t *q, float *d, float *s);
/// 1 when finch_block_gemv_q8 multiplies ggml type `type` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
/// or FINCH_BLOCK_S8_ROWS).
int finch_block_dot_supported(int type);
/// y[M, N] (+)= x · Wᵀ for decoding (1 ≤ M ≤ 4) in integers: W [N, K] in ggml `type` blocks (stored rows
/// row_bytes apart; model row n is stored row row_order[n], or n when row_order is NULL; for
/// FINCH_BLOCK_S8_ROWS int8 values with row_scales [stored rows]), x as finch_quantize_q8_groups wrote
/// it. u8 × s8 sums in int32 (AVX512-VNNI / AVX-VNNI / AVX2 / portable), block scales in f32; parallel
/// over N. Returns 0 (and does nothing) for a type, M or K it has no kernel for.
int finch_block_gemv_q8(int type, const void *w, size_t row_bytes, const ptrdiff_t *row_order, const float *row_scales,
                        int M, int N, int K, const int8_t *xq, const float *xd, const float *xs,
                        float *y, size_t ldy, int accumulate);
/// Blockwise 4-bit dequantization (bitsandbytes' packing: element e is the high nibble of byte
/// e/2 when e is even, else the low one): out[i] = code[nibble(start+i)] · absmax[(start+i)/blocksize]
/// for i < count. `code` has 16 entries; `absmax` is indexed by the block of the whole tensor.
void finch_dequant4_f32(float *out, const uint8_t *packed, const float *absmax, const float *code,
                        size_t blocksize, size_t start, size_t count);

/// y[M,N] (+)= x[M,K] · W[N,K]ᵀ for small M, W in bitsandbytes' 4-bit layout multiplied straight
/// from the packed nibbles (`code` 16 entries). Scales: `absmax` [N·K/blocksize], or when it is
/// NULL double-quantized ones, absmax[b] = ncode[qabs[b]] · nabs[b / nblock] + offset. Needs K a
/// multiple of blocksize (rows start on a block); returns 0 (and does nothing) otherwise.
int finch_linear4_small(float *y, size_t ldy, const float *x, size_t ldx, int M, int N, int K,
                        const uint8_t *packed, const float *code, int blocksize, const float *absmax,
                        const uint8_t *qabs, const float *nabs, const float *ncode, int nblock, float offset,
                        int accumulate);
/// Gives memory malloc holds free back to the OS (glibc's malloc_trim; nothing elsewhere).
void finch_release_free_memory(void);
/// Serves allocations of at least `threshold` bytes with their own mappings (glibc's
/// M_MMAP_THRESHOLD), so freed buffers go back to the OS at once; nothing elsewhere.
void finch_map_large_allocations(size_t threshold);
#endif
