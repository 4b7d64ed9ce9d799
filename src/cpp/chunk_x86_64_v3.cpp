// Chunk coders for x86-64-v3 (AVX2, BMI2, ...), compiled with -march=x86-64-v3
// and used only on CPUs that have it (see chunk.h).
#define FC_ISA x86_64_v3
#include "chunk_kernels.inc"
