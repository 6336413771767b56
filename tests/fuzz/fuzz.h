/* What every libFuzzer target here shares: its entry point, and CHECK, a
 * promise of the code under test whose breach libFuzzer must report as a
 * crash (with the input that broke it), in every build type. */
#ifndef MG_TESTS_FUZZ_H
#define MG_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x))                                                              \
            __builtin_trap();                                                  \
    } while (0)

#endif
