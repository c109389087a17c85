// The f32 GEMM prototype behind the README's "Would Finch's own f32 GEMM do better?": a
// BLIS-style AVX-512 kernel (MR rows x NV*16 columns register tile, B packed in KC x NR panels,
// [N,K] weights transposed 16x16 in registers while packing, threads split the columns) timed
// next to oneDNN's matmul primitive on the training step's shapes, with the largest difference
// between the two results. Not part of Finch (it measured no faster than oneDNN here).
//
//   gcc -O3 -fopenmp -DMR=12 -DNV=2 -o /tmp/gemm_prototype Scripts/bench/gemm_prototype.c -ldnnl -lm
//   /tmp/gemm_prototype      # GFLOP/s best of 7 after 3 warm-ups, oneDNN vs the prototype
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <omp.h>
#include <time.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>

#ifndef MR
#define MR 6
#endif
#ifndef NV
#define NV 4
#endif
#define NR (16*NV)
#ifndef KC
#define KC 256
#endif
#ifndef NC
#define NC 1024
#endif

__attribute__((target("avx512f"), always_inline))
static inline void kern(int mr, int kc, const float *ap, const float *bp, float *c, size_t ldc, int first, int acc, __mmask16 *masks) {
    __m512 r[MR][NV];
    for (int i = 0; i < MR; i++) for (int j = 0; j < NV; j++) r[i][j] = _mm512_setzero_ps();
    #pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m512 b[NV];
        for (int j = 0; j < NV; j++) b[j] = _mm512_load_ps(bp + 16*j);
#ifdef PF
        for (int j = 0; j < NV; j += 1) _mm_prefetch((const char*)(bp + PF*NR + 16*j), _MM_HINT_T0);
#endif
        for (int i = 0; i < MR; i++) if (i < mr) {
            __m512 a = _mm512_set1_ps(ap[i]);
            for (int j = 0; j < NV; j++) r[i][j] = _mm512_fmadd_ps(a, b[j], r[i][j]);
        }
        ap += MR; bp += NR;
    }
    for (int i = 0; i < MR; i++) if (i < mr) {
        float *ci = c + i * ldc;
        for (int j = 0; j < NV; j++) {
            __m512 v = r[i][j];
            if (!first || acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(masks[j], ci + 16*j));
            _mm512_mask_storeu_ps(ci + 16*j, masks[j], v);
        }
    }
}

__attribute__((target("avx512f")))
static void kernel_any(int mr, int kc, const float *ap, const float *bp, float *c, size_t ldc, int first, int acc, int nr) {
    __mmask16 m[NV];
    for (int j = 0; j < NV; j++) { int n = nr - 16*j; m[j] = n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u<<n)-1); }
    switch (mr) {
    case MR: kern(MR, kc, ap, bp, c, ldc, first, acc, m); break;
    case 13: kern(13, kc, ap, bp, c, ldc, first, acc, m); break;
    case 7: kern(7, kc, ap, bp, c, ldc, first, acc, m); break;
    case 6: kern(6, kc, ap, bp, c, ldc, first, acc, m); break;
    case 5: kern(5, kc, ap, bp, c, ldc, first, acc, m); break;
    case 4: kern(4, kc, ap, bp, c, ldc, first, acc, m); break;
    case 3: kern(3, kc, ap, bp, c, ldc, first, acc, m); break;
    case 2: kern(2, kc, ap, bp, c, ldc, first, acc, m); break;
    case 1: kern(1, kc, ap, bp, c, ldc, first, acc, m); break;
    default: kern(mr, kc, ap, bp, c, ldc, first, acc, m);
    }
}


__attribute__((target("avx512f"), always_inline))
static inline void transpose16(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_ps(r[i], r[i+1]); t[i+1] = _mm512_unpackhi_ps(r[i], r[i+1]); }
    for (int i = 0; i < 16; i += 4) {
        r[i]   = _mm512_shuffle_ps(t[i], t[i+2], 0x44); r[i+1] = _mm512_shuffle_ps(t[i], t[i+2], 0xEE);
        r[i+2] = _mm512_shuffle_ps(t[i+1], t[i+3], 0x44); r[i+3] = _mm512_shuffle_ps(t[i+1], t[i+3], 0xEE);
    }
    for (int i = 0; i < 8; i++) {
        int a = (i & 3) + (i >> 2) * 8;  // rows 0-3,8-11
        t[a]   = _mm512_shuffle_f32x4(r[a], r[a+4], 0x88);
        t[a+4] = _mm512_shuffle_f32x4(r[a], r[a+4], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i]   = _mm512_shuffle_f32x4(t[i], t[i+8], 0x88);
        r[i+8] = _mm512_shuffle_f32x4(t[i], t[i+8], 0xDD);
    }
}
// pack B[k0:k0+kc, n0:n0+nc] (op(B)) into panels [nc/NR][kc][NR]
__attribute__((target("avx512f")))
static void packB(float *bp, const float *b, size_t ldb, int bt, int k0, int kc, int n0, int nc) {
    for (int j = 0; j < nc; j += NR) {
        int nr = nc - j < NR ? nc - j : NR;
        float *dst = bp + (size_t)j * kc;
        if (!bt) {
            for (int k = 0; k < kc; k++) {
                const float *s = b + (size_t)(k0 + k) * ldb + n0 + j;
                if (nr == NR) { for (int q = 0; q < NV; q++) _mm512_store_ps(dst + k*NR + 16*q, _mm512_loadu_ps(s + 16*q)); }
                else { for (int q = 0; q < NR; q++) dst[k*NR+q] = q < nr ? s[q] : 0; }
            }
        } else if (nr == NR) {
            // B stored [N,K]: dst[k][q] = b[(n0+j+q)*ldb + k0+k]; 16x16 blocks transposed in registers
            for (int q0 = 0; q0 < NR; q0 += 16) {
                for (int k = 0; k < kc; k += 16) {
                    if (kc - k < 16) { for (int q = 0; q < 16; q++) for (int kk = k; kk < kc; kk++) dst[kk*NR+q0+q] = b[(size_t)(n0+j+q0+q)*ldb + k0+kk]; break; }
                    __m512 r[16];
                    for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_ps(b + (size_t)(n0+j+q0+q)*ldb + k0 + k);
                    transpose16(r);
                    for (int kk = 0; kk < 16; kk++) _mm512_store_ps(dst + (k+kk)*NR + q0, r[kk]);
                }
            }
        } else {
            for (int q = 0; q < NR; q++) {
                if (q < nr) { const float *s = b + (size_t)(n0 + j + q) * ldb + k0; for (int k = 0; k < kc; k++) dst[k*NR+q] = s[k]; }
                else for (int k = 0; k < kc; k++) dst[k*NR+q] = 0;
            }
        }
    }
}

static void packA(float *ap, const float *a, size_t lda, int m0, int mr, int k0, int kc) {
    for (int k = 0; k < kc; k++) for (int i = 0; i < MR; i++) ap[k*MR+i] = i < mr ? a[(size_t)(m0+i)*lda + k0 + k] : 0;
}

void my_gemm(int M, int N, int K, const float *a, size_t lda, const float *b, size_t ldb, int bt, float *c, size_t ldc, int acc) {
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int panels = (N + NR - 1) / NR;
        int p0 = panels * t / nt, p1 = panels * (t+1) / nt;
        int nlo = p0 * NR, nhi = p1 * NR < N ? p1 * NR : N;
        float *bp = aligned_alloc(64, (size_t)KC * (NC + NR) * 4);
        float *ap = aligned_alloc(64, (size_t)KC * MR * 4);
        for (int jc = nlo; jc < nhi; jc += NC) {
            int nc = nhi - jc < NC ? nhi - jc : NC;
            for (int pc = 0; pc < K; pc += KC) {
                int kc = K - pc < KC ? K - pc : KC;
                packB(bp, b, ldb, bt, pc, kc, jc, nc);
                for (int ir = 0; ir < M; ir += MR) {
                    int mr = M - ir < MR ? M - ir : MR;
                    packA(ap, a, lda, ir, mr, pc, kc);
                    for (int jr = 0; jr < nc; jr += NR) {
                        int nr = nc - jr < NR ? nc - jr : NR;
                        kernel_any(mr, kc, ap, bp + (size_t)jr * kc, c + (size_t)ir * ldc + jc + jr, ldc, pc == 0, acc, nr);
                    }
                }
            }
        }
        free(bp); free(ap);
    }
}

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec*1e-9; }

static dnnl_engine_t eng; static dnnl_stream_t st;
static dnnl_memory_desc_t md2(int r, int c, long rs, long cs) { dnnl_memory_desc_t m; dnnl_dims_t d = {r, c}, s = {rs, cs}; dnnl_memory_desc_init_by_strides(&m, 2, d, dnnl_f32, s); return m; }
double dnnl_time(int M, int N, int K, float *a, float *b, int bt, float *c) {
    dnnl_memory_desc_t am = md2(M, K, K, 1), bm = bt ? md2(K, N, 1, K) : md2(K, N, N, 1), cm = md2(M, N, N, 1);
    dnnl_matmul_desc_t op; dnnl_matmul_desc_init(&op, &am, &bm, NULL, &cm);
    dnnl_primitive_desc_t pd; dnnl_primitive_desc_create(&pd, &op, NULL, eng, NULL);
    dnnl_primitive_t p; dnnl_primitive_create(&p, pd);
    dnnl_memory_t A, B, C; dnnl_memory_create(&A, &am, eng, a); dnnl_memory_create(&B, &bm, eng, b); dnnl_memory_create(&C, &cm, eng, c);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, B}, {DNNL_ARG_DST, C}};
    double best = 1e9;
    for (int r = 0; r < 10; r++) { double t = now(); dnnl_primitive_execute(p, st, 3, args); dnnl_stream_wait(st); t = now() - t; if (r >= 3 && t < best) best = t; }
    return best;
}

int main(int argc, char **argv) {
    dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&st, eng, dnnl_stream_default_flags);
    int shapes[][4] = {{256,2048,2048,1},{256,2048,2048,0},{256,8192,2048,1},{256,2048,8192,0},{512,576,576,1},{512,1536,576,1},{512,576,1536,0},{256,49152,2048,1},{2048,2048,2048,1}};
    for (int s = 0; s < 9; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], bt = shapes[s][3];
        float *a = aligned_alloc(64, (size_t)M*K*4), *b = aligned_alloc(64, (size_t)N*K*4), *c = aligned_alloc(64, (size_t)M*N*4), *c2 = aligned_alloc(64, (size_t)M*N*4);
        for (size_t i = 0; i < (size_t)M*K; i++) a[i] = (rand() / (float)RAND_MAX) - 0.5f;
        for (size_t i = 0; i < (size_t)N*K; i++) b[i] = (rand() / (float)RAND_MAX) - 0.5f;
        double td = dnnl_time(M, N, K, a, b, bt, c2);
        double best = 1e9;
        for (int r = 0; r < 10; r++) { double t = now(); my_gemm(M, N, K, a, K, b, bt ? K : N, bt, c, N, 0); t = now() - t; if (r >= 3 && t < best) best = t; }
        double err = 0; for (size_t i = 0; i < (size_t)M*N; i++) { double e = fabs(c[i]-c2[i]); if (e > err) err = e; }
        double fl = 2.0*M*N*K;
        printf("M%d N%d K%d bt%d  dnnl %.0f  mine %.0f GFLOP/s  maxdiff %.2g\n", M, N, K, bt, fl/td/1e9, fl/best/1e9, err);
        free(a); free(b); free(c); free(c2);
    }
}
