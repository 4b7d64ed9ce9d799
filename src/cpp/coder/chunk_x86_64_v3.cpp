// Chunk coders for x86-64-v3 (AVX2, BMI2, FMA, ...), used only on CPUs that
// have it (see chunk.h): the 8-lane vector decoder of decode_avx2.inc, and
// the scalar coders with BMI2's flag-free shifts and multiplies.  Compiled
// with the baseline flags; chunk_kernels.inc switches to FC_TARGET after
// the shared headers.
#define FC_ISA x86_64_v3
#define FC_ISA_NAME "avx2"
#define FC_TARGET "arch=x86-64-v3"
#define FC_ROUNDS_AVX2 1
#include "coder/chunk_kernels.inc"
