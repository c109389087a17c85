#ifndef CFINCH_KERNELS_H
#define CFINCH_KERNELS_H
#include <stdint.h>
#include <stddef.h>
/// 1 when the CPU supports AVX-512F (kernels choose their widest path at run time).
int finch_cpu_has_avx512f(void);
#endif
