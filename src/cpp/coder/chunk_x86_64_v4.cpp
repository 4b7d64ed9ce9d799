// Chunk coders for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), compiled with
// -march=x86-64-v4 and used only on CPUs that have it (see chunk.h): eight
// lanes in one vector register.
#define FC_ISA x86_64_v4
#include "coder/chunk_kernels.inc"
