// oneDNN's f32 matmul on the training step's shapes with the weight reused, cycled through 8
// copies, or freshly written before every call (as expanding a 4-bit weight does): the mean
// GFLOP/s of 16 calls after 8 warm-ups. Behind the README's "Would Finch's own f32 GEMM do better?".
//
//   gcc -O2 -fopenmp -o /tmp/gemm_fresh_weight Scripts/bench/gemm_fresh_weight.c -ldnnl && /tmp/gemm_fresh_weight
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec*1e-9; }
static dnnl_engine_t eng; static dnnl_stream_t st;
static dnnl_memory_desc_t md2(int r, int c, long rs, long cs) { dnnl_memory_desc_t m; dnnl_dims_t d = {r, c}, s = {rs, cs}; dnnl_memory_desc_init_by_strides(&m, 2, d, dnnl_f32, s); return m; }
int main() {
    dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&st, eng, dnnl_stream_default_flags);
    int shapes[][4] = {{256,2048,2048,1},{256,8192,2048,1},{256,2048,8192,0},{256,2048,2048,0}};
    for (int s = 0; s < 4; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], bt = shapes[s][3];
        int NB = 8; // distinct weights cycled to defeat caching
        float *a = malloc((size_t)M*K*4), *c = malloc((size_t)M*N*4);
        float *b[8]; for (int i = 0; i < NB; i++) { b[i] = malloc((size_t)N*K*4); for (size_t j = 0; j < (size_t)N*K; j++) b[i][j] = 0.01f*(j%7); }
        for (size_t j = 0; j < (size_t)M*K; j++) a[j] = 0.1f;
        dnnl_memory_desc_t am = md2(M, K, K, 1), bm = bt ? md2(K, N, 1, K) : md2(K, N, N, 1), cm = md2(M, N, N, 1);
        dnnl_matmul_desc_t op; dnnl_matmul_desc_init(&op, &am, &bm, NULL, &cm);
        dnnl_primitive_desc_t pd; dnnl_primitive_desc_create(&pd, &op, NULL, eng, NULL);
        dnnl_primitive_t p; dnnl_primitive_create(&p, pd);
        dnnl_memory_t A, B, C; dnnl_memory_create(&A, &am, eng, a); dnnl_memory_create(&B, &bm, eng, b[0]); dnnl_memory_create(&C, &cm, eng, c);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, B}, {DNNL_ARG_DST, C}};
        double fl = 2.0*M*N*K;
        for (int mode = 0; mode < 3; mode++) {
            double tot = 0; int n = 0;
            for (int r = 0; r < 24; r++) {
                float *bb = mode == 0 ? b[0] : b[r % NB];
                if (mode == 2) { 
                    #pragma omp parallel for
                    for (size_t j = 0; j < (size_t)N*K; j++) bb[j] = 0.01f*(j%5);
                }
                dnnl_memory_set_data_handle(B, bb);
                double t = now(); dnnl_primitive_execute(p, st, 3, args); dnnl_stream_wait(st); t = now() - t;
                if (r >= 8) { tot += t; n++; }
            }
            printf("M%d N%d K%d bt%d %s: %.0f GFLOP/s (mean)\n", M, N, K, bt, mode == 0 ? "same B  " : mode == 1 ? "cycled B" : "fresh B ", fl/(tot/n)/1e9);
        }
    }
}
