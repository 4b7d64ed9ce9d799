// The start-up map: how a lane codes a symbol from a state below its
// frequency (docs/format.md, "The coder").
//
// The plain rANS step sends a symbol (f, c) coded from x < f to x' = c + x:
// a lane starting at 0 then pays for its first symbols with the P - 1 bits
// or so of a cumulative start, not with their information (10 to 13 bits a
// lane, measured on Gaussian rows at P = 16).  The start-up map sends it to
// the rank of the pair (s, x) among all pairs (t, k), k < f_t, of its row,
// ordered by the key (2k + 1) / (2 f_t), equal keys by t.  That is a
// bijection of the pairs onto [0, M) like the plain step's, but the rank is
// about (x + 1/2) M / f: the state grows by M / f a symbol from the first
// symbol on.  The encoder's x < f is exactly the decoder's x' < M.
//
// Baseline code shared by every kernel build: it runs for a lane's first
// symbols only, and keeping it out of the kernels keeps their loops as
// they were.  A row is given by its cumulative frequencies: cdf[0] = 0,
// cdf[count] = M, every frequency cdf[t + 1] - cdf[t] at least 1.
#pragma once

#include <cstdint>

namespace featcodec {

// The symbol whose pair (t, 0) has rank 0: the most frequent, the lowest
// index among equals.  A run of it coded from state 0 stays at 0.
uint32_t start_zero_symbol(const uint32_t* cdf, uint32_t count);

// The rank of the pair (s, k), k < f_s.
uint64_t start_rank(const uint32_t* cdf, uint32_t count, uint32_t s, uint64_t k);

struct StartPair {
  uint32_t symbol;
  uint32_t freq;
  uint64_t k;
};

// The pair of rank y < 2^precision = M.
StartPair start_pair(const uint32_t* cdf, uint32_t count, uint64_t y, int precision);

}  // namespace featcodec
