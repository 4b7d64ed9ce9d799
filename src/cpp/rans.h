// rANS with a 64-bit state and 32-bit renormalization words.
//
// The state x lies in [L, 2^63) with L = 2^31.  Coding symbol s with frequency
// f and cumulative start c at precision P (M = 2^P, P <= 16):
//
//   encode:  x' = floor(x / f) * M + (x mod f) + c
//   decode:  slot = x mod M;  s = the symbol with c <= slot < c + f;
//            x = f * floor(x / M) + slot - c
//
// Before encoding, x is brought below f * 2^(63 - P) by emitting its low 32
// bits (at most once); the decoder reads a word back whenever x falls below L.
// L / M >= 2^15 keeps the coding loss negligible.  Encoding runs backwards
// over the symbols and writes words backwards, so the decoder reads forwards.
//
// A single-lane stream starts its encoder at x = 0 instead of L: the state
// then grows through [0, L) before its first word, and the flush holds only
// the information coded so far (a tiny message costs a few bytes, not 8).
// Its decoder reads a word when x < L only while words remain, and ends at 0.
// With several lanes sharing one word stream this is ambiguous, so they start
// at L (and end there).
//
// Raw bits (the escape's payload) are a symbol of frequency 1 at precision k.
#pragma once

#include <cstdint>

#include "tables.h"

namespace featcodec {

constexpr uint64_t kStateLow = uint64_t{1} << 31;

inline uint64_t mulhi64(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

inline void store_u32(uint8_t* p, uint32_t v) {
  for (int b = 0; b < 4; ++b) p[b] = static_cast<uint8_t>(v >> (8 * b));
}
inline uint32_t load_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// --- encoder; `out` points at the first byte written so far -------------------
// The caller leaves at least 4 writable bytes below every position `out` can
// take: the word is stored unconditionally and kept only when emitted.

inline void rans_encode(uint64_t& x, const EncSymbol& sym, int precision, uint8_t*& out) {
  const uint64_t x_max = uint64_t{sym.freq} << (63 - precision);
  const bool emit = x >= x_max;
  store_u32(out - 4, static_cast<uint32_t>(x));
  out -= emit ? 4 : 0;
  x = emit ? x >> 32 : x;
  // floor(x / freq) = floor(2x * rcp / 2^(64 + shift)), rcp = ceil(2^(63 + shift) / freq),
  // shift = ceil(log2 freq): exact for x < 2^63 (the error is below 1/freq).
  const uint64_t q = mulhi64(x << 1, sym.rcp) >> sym.shift;
  x += sym.start + q * sym.cmpl_freq;  // == q * M + (x - q * freq) + start
}

// Pushes the k low bits of v (1 <= k <= 16) with a uniform distribution.
inline void rans_encode_bits(uint64_t& x, uint32_t v, int k, uint8_t*& out) {
  if (x >= (uint64_t{1} << (63 - k))) {
    out -= 4;
    store_u32(out, static_cast<uint32_t>(x));
    x >>= 32;
  }
  x = (x << k) | v;
}

// --- decoder; reads forwards and never passes `end` ----------------------------

struct WordReader {
  const uint8_t* in;
  const uint8_t* end;
  bool overrun = false;

  // Multi-lane streams: x < L always means a word follows (zeros past the
  // end, reported by the caller once the chunk is done).
  inline uint64_t refill(uint64_t x) {
    if (in < end) {
      x = (x << 32) | load_u32(in);
      in += 4;
    } else {
      overrun = true;
      x <<= 32;
    }
    return x;
  }
  // Single-lane streams: x < L without words left is the start-up phase.
  inline uint64_t refill_if_any(uint64_t x) {
    if (in < end) {
      x = (x << 32) | load_u32(in);
      in += 4;
    }
    return x;
  }
};

template <bool kSingleLane>
inline uint64_t renormalize(uint64_t x, WordReader& reader) {
  if (x >= kStateLow) return x;
  return kSingleLane ? reader.refill_if_any(x) : reader.refill(x);
}

// Decodes one symbol of `row`; returns its index in [0, row.length] (length
// is the escape).  Any state gives a valid index, so corrupt input cannot
// make it read outside the row.
template <bool kSingleLane>
inline uint32_t rans_decode(uint64_t& x, const TableRow& row, int precision, int lookup_shift,
                            WordReader& reader) {
  const uint32_t slot = static_cast<uint32_t>(x) & ((uint32_t{1} << precision) - 1);
  uint32_t s = row.lookup[slot >> lookup_shift];
  while (row.cdf[s + 1] <= slot) ++s;  // cdf[length + 1] = M > slot stops it
  const uint32_t start = row.cdf[s];
  x = uint64_t{row.cdf[s + 1] - start} * (x >> precision) + slot - start;
  x = renormalize<kSingleLane>(x, reader);
  return s;
}

template <bool kSingleLane>
inline uint32_t rans_decode_bits(uint64_t& x, int k, WordReader& reader) {
  const uint32_t v = static_cast<uint32_t>(x) & ((uint32_t{1} << k) - 1);
  x = renormalize<kSingleLane>(x >> k, reader);
  return v;
}

}  // namespace featcodec
