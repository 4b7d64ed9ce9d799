// The escape code (docs/format.md, "Escape stream"): a value v outside a
// row's support [lo, hi) is coded as the row's escape symbol, and its value
// as u = 2 (v - hi) above, 2 (lo - 1 - v) + 1 below; e = u + 1 >= 1 is
// written as nb = bit_length(e) - 1 in 6 bits, then the nb low bits of e.
// The encoder and information_content both count its cost from here.
// Internal linkage: compiled into kernels for different instruction sets.
#pragma once

#include <cstdint>

namespace featcodec {
namespace {

constexpr int kEscapeLengthBits = 6;
constexpr int kMaxEscapeBits = 33;

inline uint64_t escape_code(int64_t v, int64_t lo, int64_t hi) {
  return (v >= hi ? uint64_t(v - hi) * 2 : uint64_t(lo - 1 - v) * 2 + 1) + 1;
}
// nb: the bits of e after its leading one.
inline int escape_payload_bits(uint64_t e) { return 63 - __builtin_clzll(e); }
// Raw bits of the escape stream entry of v (besides the escape symbol's own cost).
inline int escape_entry_bits(int64_t v, int64_t lo, int64_t hi) {
  return kEscapeLengthBits + escape_payload_bits(escape_code(v, lo, hi));
}

}  // namespace
}  // namespace featcodec
