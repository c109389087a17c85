#ifndef CFINCHFUZZ_H
#define CFINCHFUZZ_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (libclang_rt.fuzzer, linked by -sanitize=fuzzer): runs the fuzzing loop with
/// `callback` as the harness. SwiftPM gives an executable its own entry point, so finch-fuzz calls
/// this from it instead of using libFuzzer's main.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
