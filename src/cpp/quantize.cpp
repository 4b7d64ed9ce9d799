#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <stdexcept>
#include <string>

namespace featcodec {
namespace {

using u128 = unsigned __int128;

// floor(log2(v) * 2^48) for v >= 1.  The integer part is the bit length; the
// fraction comes bit by bit from squaring the mantissa y in [1, 2) held as a
// Q2.62 fixed-point number: y^2 >= 2 means the next bit is 1 (then halve).
uint64_t fixed_log2(uint64_t v) {
  int e = 63 - __builtin_clzll(v);
  uint64_t y = (e <= 62) ? (v << (62 - e)) : (v >> 1);  // y / 2^62 in [1, 2)
  uint64_t result = static_cast<uint64_t>(e) << kLog2FracBits;
  for (int bit = kLog2FracBits - 1; bit >= 0; --bit) {
    u128 sq = static_cast<u128>(y) * y;          // Q4.124
    uint64_t y2 = static_cast<uint64_t>(sq >> 62);  // back to Q2.62, in [1, 4)
    if (y2 >= (uint64_t{2} << 62)) {
      result |= uint64_t{1} << bit;
      y2 >>= 1;
    }
    y = y2;
  }
  return result;
}

// A candidate move in the exchange phase, ordered by value then by symbol
// index (lower index first), so that ties resolve the same way everywhere.
struct Move {
  u128 value;
  int64_t symbol;
  uint32_t version;
};
struct LargerGainFirst {
  bool operator()(const Move& a, const Move& b) const {
    if (a.value != b.value) return a.value < b.value;
    return a.symbol > b.symbol;
  }
};
struct SmallerLossFirst {
  bool operator()(const Move& a, const Move& b) const {
    if (a.value != b.value) return a.value > b.value;
    return a.symbol > b.symbol;
  }
};

}  // namespace

const std::vector<uint64_t>& fixed_log2_table() {
  static const std::vector<uint64_t> table = [] {
    std::vector<uint64_t> t((uint64_t{1} << kMaxPrecision) + 2, 0);
    for (uint64_t v = 1; v < t.size(); ++v) t[v] = fixed_log2(v);
    return t;
  }();
  return table;
}

void quantize_pmf(const double* p, int64_t n, int precision, uint32_t* freq) {
  if (precision < 1 || precision > kMaxPrecision)
    throw std::invalid_argument("precision must be in [1, 16]");
  const int64_t total_freq = int64_t{1} << precision;
  if (n < 1 || n > total_freq)
    throw std::invalid_argument("a table of " + std::to_string(n) +
                                " symbols (escape included) does not fit precision " +
                                std::to_string(precision));

  // Fixed-point weights w_i = floor(p_i / sum * 2^62).
  // Normalize by the largest value first, so that huge finite values cannot
  // overflow the sum.  Every operation is an exactly rounded IEEE one.
  double largest = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!(p[i] >= 0.0) || !std::isfinite(p[i]))
      throw std::invalid_argument("probabilities must be finite non-negative numbers");
    largest = std::max(largest, p[i]);
  }
  if (!(largest > 0.0)) throw std::invalid_argument("probabilities must not all be zero");
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] / largest;
  std::vector<uint64_t> w(n);
  u128 w_total = 0;
  for (int64_t i = 0; i < n; ++i) {
    w[i] = static_cast<uint64_t>(std::ldexp((p[i] / largest) / sum, 62));
    w_total += w[i];
  }

  // Start below the optimum's neighbourhood: f_i = 1 + floor(w_i (M - n) / W).
  const u128 spare = static_cast<u128>(total_freq - n);
  int64_t assigned = 0;
  for (int64_t i = 0; i < n; ++i) {
    freq[i] = 1 + static_cast<uint32_t>(w_total ? (w[i] * spare) / w_total : 0);
    assigned += freq[i];
  }

  const std::vector<uint64_t>& lg = fixed_log2_table();
  // Bits saved by f -> f + 1, and lost by f -> f - 1, in fixed point.
  auto gain = [&](int64_t i) { return static_cast<u128>(w[i]) * (lg[freq[i] + 1] - lg[freq[i]]); };
  auto loss = [&](int64_t i) { return static_cast<u128>(w[i]) * (lg[freq[i]] - lg[freq[i] - 1]); };

  std::vector<uint32_t> version(n, 0);
  std::priority_queue<Move, std::vector<Move>, LargerGainFirst> gains;
  std::priority_queue<Move, std::vector<Move>, SmallerLossFirst> losses;
  for (int64_t i = 0; i < n; ++i) {
    gains.push({gain(i), i, 0});
    if (freq[i] > 1) losses.push({loss(i), i, 0});
  }
  auto changed = [&](int64_t i) {
    ++version[i];
    gains.push({gain(i), i, version[i]});
    if (freq[i] > 1) losses.push({loss(i), i, version[i]});
  };
  auto drop_stale = [&](auto& heap) {
    while (!heap.empty() && heap.top().version != version[heap.top().symbol]) heap.pop();
  };

  // Greedy: hand out the remaining units one at a time to the best gain.
  for (; assigned < total_freq; ++assigned) {
    drop_stale(gains);
    int64_t i = gains.top().symbol;
    ++freq[i];
    changed(i);
  }
  // Exchange: move a unit from the cheapest loss to the best gain while that
  // strictly improves.  For a separable concave objective, no improving
  // exchange means optimal.  Each move strictly increases the integer
  // objective sum w_i lg[f_i], so the loop terminates.
  for (;;) {
    drop_stale(gains);
    drop_stale(losses);
    if (losses.empty()) break;
    const Move best = gains.top(), cheapest = losses.top();
    if (best.symbol == cheapest.symbol || !(best.value > cheapest.value)) break;
    ++freq[best.symbol];
    --freq[cheapest.symbol];
    changed(best.symbol);
    changed(cheapest.symbol);
  }
}

}  // namespace featcodec
