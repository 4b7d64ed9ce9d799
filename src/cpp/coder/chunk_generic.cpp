// Chunk coders for the baseline instruction set (see chunk.h).
#define FC_ISA generic
#define FC_ISA_NAME "generic"
#define FC_ELEMENT_MODELS 1
#include "coder/chunk_kernels.inc"
