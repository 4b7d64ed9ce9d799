#include "coder/start_map.h"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace featcodec {
namespace {

inline uint64_t freq_of(const uint32_t* cdf, uint32_t t) { return cdf[t + 1] - cdf[t]; }

}  // namespace

uint32_t start_zero_symbol(const uint32_t* cdf, uint32_t count) {
  uint32_t best = 0;
  for (uint32_t t = 1; t < count; ++t)
    if (freq_of(cdf, t) > freq_of(cdf, best)) best = t;
  return best;
}

// The pairs before (s, k_s): per symbol t, the odd numbers o = 2k + 1 with
// o f_s < (2k_s + 1) f_t, and the equal key (o f_s == (2k_s + 1) f_t) when t < s.
uint64_t start_rank(const uint32_t* cdf, uint32_t count, uint32_t s, uint64_t k_s) {
  if (k_s == 0 && s == start_zero_symbol(cdf, count)) return 0;  // a run of it from state 0, without divisions
  const uint64_t f_s = freq_of(cdf, s), odd = 2 * k_s + 1;
  uint64_t rank = 0;
  for (uint32_t t = 0; t < count; ++t) {
    const uint64_t a = odd * freq_of(cdf, t);
    rank += ((a - 1) / f_s + 1) / 2;
    rank += t < s && a % f_s == 0 && (a / f_s) % 2 == 1;
  }
  return rank;
}

namespace {

// The general search: each symbol's count of pairs with a key below kappa
// is within 1/2 of kappa f_t, so the pair of rank y has its key within
// count / 2 of y / M (in units of 1 / M).  The pairs with keys in a window
// that wide, the rank of the least of them, and a selection give it:
// O(count + window), whatever the row.
StartPair start_pair_in_window(const uint32_t* cdf, uint32_t count, uint64_t y, int precision) {
  const int64_t lo = 2 * int64_t(y) - count - 2, hi = 2 * int64_t(y) + count + 2;  // keys in [lo, hi] / 2M
  std::vector<StartPair> window;
  for (uint32_t t = 0; t < count; ++t) {
    const int64_t f = int64_t(freq_of(cdf, t));
    const int64_t k_lo = std::max<int64_t>(0, ((lo * f >> precision) - 1) / 2);
    const int64_t k_hi = std::min<int64_t>(f - 1, (hi * f >> precision) / 2);
    for (int64_t k = k_lo; k <= k_hi; ++k) {
      const int64_t key = (2 * k + 1) << precision;  // the key times 2 M f
      if (lo * f <= key && key <= hi * f) window.push_back({t, uint32_t(f), uint64_t(k)});
    }
  }
  // Never empty (the window holds the pair sought); the guard only keeps a
  // broken invariant from reading out of bounds.
  if (window.empty()) return {0, uint32_t(freq_of(cdf, 0)), 0};
  const auto before = [](const StartPair& p, const StartPair& q) {
    const uint64_t a = (2 * p.k + 1) * q.freq, b = (2 * q.k + 1) * p.freq;
    return a != b ? a < b : p.symbol < q.symbol;
  };
  const StartPair& least = *std::min_element(window.begin(), window.end(), before);
  const uint64_t first = start_rank(cdf, count, least.symbol, least.k);
  // y - first < window.size(): the window holds every key from the least to y's.
  const size_t nth = std::min<uint64_t>(y - std::min(y, first), window.size() - 1);
  std::nth_element(window.begin(), window.begin() + std::ptrdiff_t(nth), window.end(), before);
  return window[nth];
}

// Steps of the walk below before the general search takes over (a row
// with many equal keys, say a long tail of frequency 1, can put the mark
// up to count / 2 pairs away).
constexpr uint64_t kMaxWalk = 8;

}  // namespace

// The fast way first.  The pairs with a key below (2y + 1) / 2M, per symbol t
// the odd o with o M < (2y + 1) f_t (no key equals it: M is a power of 2
// above every f_t of a row of two or more symbols), number within count / 2
// of y, and typically within a few: the pair of rank y is then a few steps
// from there in key order (forwards taking the least next key, backwards
// giving back the greatest), each step O(count) without a division.
StartPair start_pair(const uint32_t* cdf, uint32_t count, uint64_t y, int precision) {
  if (count == 1) return {0, uint32_t(freq_of(cdf, 0)), y};
  if (y == 0) {  // a run of the most frequent symbol from state 0, without a search
    const uint32_t s = start_zero_symbol(cdf, count);
    return {s, uint32_t(freq_of(cdf, s)), 0};
  }
  const uint64_t odd = 2 * y + 1;
  std::vector<uint64_t> below(count);  // pairs of symbol t with a key below the mark
  uint64_t rank = 0;
  for (uint32_t t = 0; t < count; ++t) {
    below[t] = (((odd * freq_of(cdf, t) - 1) >> precision) + 1) / 2;
    rank += below[t];
  }
  if ((rank > y ? rank - y : y - rank) > kMaxWalk) return start_pair_in_window(cdf, count, y, precision);
  // (2k + 1) / 2f_t against (2k' + 1) / 2f_u, equal keys ordered by symbol.
  const auto precedes = [&](uint32_t t, uint64_t k, uint32_t u, uint64_t k_u) {
    const uint64_t a = (2 * k + 1) * freq_of(cdf, u), b = (2 * k_u + 1) * freq_of(cdf, t);
    return a != b ? a < b : t < u;
  };
  while (rank <= y) {  // the next pair in key order has rank `rank`
    uint32_t next = count;
    for (uint32_t t = 0; t < count; ++t)
      if (below[t] < freq_of(cdf, t) && (next == count || precedes(t, below[t], next, below[next]))) next = t;
    if (next == count) return {0, uint32_t(freq_of(cdf, 0)), 0};  // past the last pair: y >= M, never
    if (rank == y) return {next, uint32_t(freq_of(cdf, next)), below[next]};
    ++below[next];
    ++rank;
  }
  for (;;) {  // rank > y: the pair before the mark has rank `rank - 1`
    uint32_t last = count;
    for (uint32_t t = 0; t < count; ++t)
      if (below[t] > 0 && (last == count || precedes(last, below[last] - 1, t, below[t] - 1))) last = t;
    --below[last];  // some symbol has a pair below, as rank > 0
    if (--rank == y) return {last, uint32_t(freq_of(cdf, last)), below[last]};
  }
}

}  // namespace featcodec
