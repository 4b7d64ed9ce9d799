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
// Every lane starts its encoder at x = 0 rather than L: the state grows
// through [0, L) (its start-up phase, never emitting) before its first word,
// so the final flush holds only information, not the 31 bits of L.  The
// decoder must then not read words for a lane's start-up symbols (see
// renormalize); it ends at 0.
//
// Small states use the start-up map instead (start_map.h): a symbol coded
// from x < f goes to a rank near (x + 1/2) M / f rather than to c + x, and
// the decoder inverts it where x' < M.
//
#pragma once

#include <cstdint>
#include <cstring>

#include "coder/start_map.h"

#include "tables/tables.h"

namespace featcodec {
// Internal linkage: compiled into kernels for different instruction sets.
namespace {

constexpr uint64_t kStateLow = uint64_t{1} << 31;
constexpr uint64_t kMaxTotal = uint64_t{1} << 16;  // M at the largest precision

inline uint64_t mulhi64(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// Little-endian 32-bit words at any alignment.
inline void store_u32(uint8_t* p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(p, &v, 4);
#else
  for (int b = 0; b < 4; ++b) p[b] = static_cast<uint8_t>(v >> (8 * b));
#endif
}
inline uint32_t load_u32(const uint8_t* p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#else
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
#endif
}

// --- encoder; `out` points at the first byte written so far -------------------
// The caller leaves at least 4 writable bytes below every position `out` can
// take: the word is stored unconditionally and kept only when emitted.

inline void rans_encode(uint64_t& x, const EncSymbol& sym, uint8_t*& out) {
  // Branch-free: the word is stored either way and kept only when emitted
  // (x >= sym.bound), which happens at random: a branch would mispredict.
  store_u32(out - 4, static_cast<uint32_t>(x));
#if defined(__x86_64__) && defined(__GNUC__)
  // Two conditional moves.  GCC makes a branch of `emit ? a : b` here, and
  // the arithmetic form below costs four more instructions a symbol.
  uint64_t high = x >> 32;
  uint8_t* below = out - 4;
  __asm__("cmpq %[bound], %[x]\n\tcmovae %[high], %[x]\n\tcmovae %[below], %[out]"
          : [x] "+r"(x), [out] "+r"(out)
          : [bound] "m"(sym.bound), [high] "r"(high), [below] "r"(below)
          : "cc");
#else
  const uint64_t emit = x >= sym.bound;
  out -= 4 * emit;
  x >>= 32 * emit;
#endif
  // floor(x / freq) = floor(2x * rcp / 2^(64 + shift)), rcp = ceil(2^(63 + shift) / freq),
  // shift = ceil(log2 freq): exact for x < 2^63 (the error is below 1/freq).
  const uint64_t q = mulhi64(x << 1, sym.rcp) >> sym.shift;
  x += sym.start + q * sym.cmpl_freq;  // == q * M + (x - q * freq) + start
}

// The same step for an interval known only at coding time (a per-element
// model): a division instead of a table's precomputed reciprocal.
inline void rans_encode_interval(uint64_t& x, uint32_t start, uint32_t freq, int precision, uint8_t*& out) {
  const uint64_t emit = x >= (uint64_t{freq} << (63 - precision));
  store_u32(out - 4, static_cast<uint32_t>(x));
  out -= 4 * emit;
  x >>= 32 * emit;
  x = ((x / freq) << precision) + x % freq + start;
}

// --- decoder; reads forwards and never passes `end` ----------------------------

struct WordReader {
  const uint8_t* words;
  size_t size;           // bytes, a multiple of 4 in a valid message
  size_t pos = 0;        // passes `size` only on corrupt input
  bool corrupt = false;  // a read no encoder would have caused
};

// Reads a word when x < L: the encoder emitted one there.  The exception is
// a lane's start-up phase (its last symbols in decoding order, coded while
// the encoder's state was still below L), where nothing was emitted.  Several
// lanes are told which symbols those are (`startup`); a single lane is in it
// exactly when its words are used up.  Past the end, zeros are shifted in and
// pos marks the overrun.  An encoder emits before a symbol of frequency f only
// when x >= f * 2^(63 - P), which leaves x >= f * 2^(31 - P) (equivalently:
// the state before the symbol was >= L): a read below that is one no
// encoder causes (`corrupt`).  A branch, not a select: a
// predicted branch lets the lanes run ahead, where a select would chain every
// lane through `pos`.
template <bool kSingleLane>
inline uint64_t renormalize(uint64_t x, WordReader& reader, bool startup, uint32_t freq, int precision) {
  if (__builtin_expect(x >= kStateLow, 1) || startup) return x;
  if (reader.pos + 4 <= reader.size) {
    reader.corrupt |= x < (uint64_t{freq} << (31 - precision));
    x = (x << 32) | load_u32(reader.words + reader.pos);
    reader.pos += 4;
  } else if (!kSingleLane) {
    x <<= 32;
    reader.pos = reader.size + 4;
  }
  return x;
}

// Decodes one symbol of `row`; returns its index in [0, row.length] (length
// is the escape).  Any state gives a valid index, so corrupt input cannot
// make it read outside the row.
template <bool kSingleLane>
inline uint32_t rans_decode(uint64_t& x, const TableRow& row, int precision, int lookup_shift,
                            WordReader& reader, bool startup = false) {
  const uint32_t slot = static_cast<uint32_t>(x) & ((uint32_t{1} << precision) - 1);
  uint32_t s = row.lookup[slot >> lookup_shift];
  // Most buckets hold at most one symbol boundary: one branch-free step,
  // then a loop that rarely runs.  cdf[length + 1] = M > slot stops both.
  s += row.cdf[s + 1] <= slot;
  while (__builtin_expect(row.cdf[s + 1] <= slot, 0)) ++s;
  const uint32_t start = row.cdf[s], freq = row.cdf[s + 1] - start;
  x = uint64_t{freq} * (x >> precision) + slot - start;
  x = renormalize<kSingleLane>(x, reader, startup, freq, precision);
  return s;
}

// The decoding step of the start-up map, for x < M (rans_decode's x'): the
// symbol's index, with x its state before.  start_map.cpp does the work,
// for a lane's last symbols only.
template <bool kSingleLane>
inline uint32_t decode_start(uint64_t& x, const TableRow& row, int precision, WordReader& reader, bool startup) {
  const StartPair pair = start_pair(row.cdf, row.length + 1, x, precision);
  x = renormalize<kSingleLane>(pair.k, reader, startup, pair.freq, precision);
  return pair.symbol;
}

// rans_decode, or decode_start where the state is below M.
template <bool kSingleLane>
inline uint32_t decode_symbol(uint64_t& x, const TableRow& row, int precision, int lookup_shift, WordReader& reader,
                              bool startup = false) {
  if (__builtin_expect(x >> precision == 0, 0)) return decode_start<kSingleLane>(x, row, precision, reader, startup);
  return rans_decode<kSingleLane>(x, row, precision, lookup_shift, reader, startup);
}

}  // namespace
}  // namespace featcodec
