// Chunk coders for the baseline instruction set (see chunk.h).
#define FC_ISA generic
#include "chunk_kernels.inc"
