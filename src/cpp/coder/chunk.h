// The chunk coders, built once per instruction set and chosen at run time.
//
// chunk_kernels.inc holds every per-symbol loop.  It is compiled for the
// baseline instruction set (chunk_generic.cpp) and, on x86-64, for
// x86-64-v3 ("avx2": the vector decoder of decode_avx2.inc) and x86-64-v4
// ("avx512": decode_avx512.inc).  The message layer (codec.cpp) calls
// whichever chunk_kernels() picks: the best the CPU supports, or the one
// named by the environment variable FEATCODEC_ISA ("generic", "avx2",
// "avx512"; a level the CPU lacks falls back to the best below it).  All
// produce and accept exactly the same bytes.
//
// The ISA builds are compiled with the baseline flags and switch the
// instruction set with a target pragma after the shared headers
// (chunk_kernels.inc): inline and template code those headers define (the
// standard library's, tables.h's) is compiled for the baseline in every
// build, so whichever copy the linker keeps runs on every CPU, and link
// order does not matter.  Everything compiled for the ISA has internal
// linkage or lives in the ISA's namespace (tools/check_isa_symbols.py
// checks the objects).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coder/codec.h"

namespace featcodec {

// Symbols are coded a block at a time so that broadcast indexes never need a
// per-element array of the whole tensor.  A multiple of every lane count.
constexpr int64_t kBlock = 4096;

// What decoding a chunk found out, for the message layer's checks.
struct ChunkOutcome {
  uint64_t hash = 0;       // the chunk checksum of the values (when asked for)
  uint64_t lane0_end = 0;  // lane 0's final state: the message checksum in chunk 0, else 0
  bool escapes = false;    // the chunk has a nonempty escape stream
};

struct ChunkKernels {
  // Codes symbols [begin, begin + count) with `lanes` lanes into `part`,
  // lane 0 starting at `lane0_start` (the message checksum in chunk 0, else 0).
  void (*encode)(int lanes, const int32_t* symbols, int64_t begin, int64_t count, const IndexSource& indexes,
                 const Tables& tables, Message::Chunk& part, uint64_t lane0_start);
  // Decodes one chunk's bytes into out[begin, begin + count); DecodeError if
  // bad.  With `hash`, also the chunk checksum of the values (checksum.h).
  void (*decode)(int lanes, const uint8_t* data, size_t size, bool escapes, int lane0_high, int64_t begin, int64_t count,
                 const IndexSource& indexes, const Tables& tables, int32_t* out, bool hash, ChunkOutcome& outcome);
  // The same for per-element parametric models (codec.h, ElementModels).
  void (*encode_elements)(int lanes, const int32_t* symbols, int64_t begin, int64_t count,
                          const ElementModels& models, Message::Chunk& part, uint64_t lane0_start);
  void (*decode_elements)(int lanes, const uint8_t* data, size_t size, bool escapes, int lane0_high, int64_t begin,
                          int64_t count, const ElementModels& models, int32_t* out, bool hash,
                          ChunkOutcome& outcome);
  const char* isa;
};

namespace generic {
extern const ChunkKernels kernels;
// Per-element models are coded by the baseline build only (every build's
// table shares them): they spend their time evaluating the distributions
// (table_math.h), which no vector unit speeds up.
void encode_elements(int lanes, const int32_t* symbols, int64_t begin, int64_t count, const ElementModels& models,
                     Message::Chunk& part, uint64_t lane0_start);
void decode_elements(int lanes, const uint8_t* data, size_t size, bool escapes, int lane0_high, int64_t begin, int64_t count,
                     const ElementModels& models, int32_t* out, bool hash, ChunkOutcome& outcome);
}
#ifdef FEATCODEC_HAVE_X86_64_LEVELS
namespace x86_64_v3 {
extern const ChunkKernels kernels;
}
namespace x86_64_v4 {
extern const ChunkKernels kernels;
}
#endif

// The kernels in use: chosen on first use (see above), then as selected.
// Throws std::invalid_argument if FEATCODEC_ISA names no known kernels.
const ChunkKernels& chunk_kernels();
// Switches to the kernels of `isa` ("generic", "avx2", "avx512"); false if
// this build or CPU lacks them.  For tests and benchmarks.
bool select_kernels(const std::string& isa);
// The kernels this build has, and those of them this CPU can run.
std::vector<std::string> built_kernels();
std::vector<std::string> available_kernels();

}  // namespace featcodec
