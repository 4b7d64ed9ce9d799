// Chunk coders for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), used only on CPUs
// that have it (see chunk.h): eight lanes in one vector register.  Compiled
// with the baseline flags; chunk_kernels.inc switches to FC_TARGET after the
// shared headers.
#define FC_ISA x86_64_v4
#define FC_ISA_NAME "avx512"
#define FC_TARGET "arch=x86-64-v4"
#define FC_ROUNDS_AVX512 1
#include "coder/chunk_kernels.inc"
