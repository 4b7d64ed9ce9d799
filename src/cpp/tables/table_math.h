// Table arithmetic shared by the CPU builders (quantize.cpp, tables.cpp) and
// the CUDA kernels (cuda/kernels.cu).  One source for both is what makes a
// table built on a GPU equal, bit for bit, to the one the CPU builds: every
// routine here is header-only, marked FC_HD, allocates nothing (callers pass
// scratch buffers), and uses only integer arithmetic and exactly rounded IEEE
// operations.  Device code must be compiled with -fmad=false and IEEE
// division/sqrt, as the host is with -ffp-contract=off.
#pragma once

#include <cstdint>

#include "tables/detmath.h"

namespace featcodec {

constexpr int kMaxPrecision = 16;
constexpr int kLog2FracBits = 48;
// Entries of the fixed-point log2 table: f in [0, 2^16 + 1].
constexpr int64_t kLog2TableSize = (int64_t{1} << kMaxPrecision) + 2;

using u128 = unsigned __int128;

FC_HD inline int count_leading_zeros64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return __clzll(static_cast<long long>(v));
#else
  return __builtin_clzll(v);
#endif
}

// floor(log2(v) * 2^48) for v >= 1.  The integer part is the bit length; the
// fraction comes bit by bit from squaring the mantissa y in [1, 2) held as a
// Q2.62 fixed-point number: y^2 >= 2 means the next bit is 1 (then halve).
FC_HD inline uint64_t fixed_log2(uint64_t v) {
  const int e = 63 - count_leading_zeros64(v);
  uint64_t y = (e <= 62) ? (v << (62 - e)) : (v >> 1);  // y / 2^62 in [1, 2)
  uint64_t result = static_cast<uint64_t>(e) << kLog2FracBits;
  for (int bit = kLog2FracBits - 1; bit >= 0; --bit) {
    const u128 sq = static_cast<u128>(y) * y;             // Q4.124
    uint64_t y2 = static_cast<uint64_t>(sq >> 62);  // back to Q2.62, in [1, 4)
    if (y2 >= (uint64_t{2} << 62)) {
      result |= uint64_t{1} << bit;
      y2 >>= 1;
    }
    y = y2;
  }
  return result;
}

// --- rate-optimal quantization of a pmf ----------------------------------------

enum QuantizeStatus : int {
  kQuantizeOk = 0,
  kQuantizeBadPrecision = 1,  // precision outside [1, 16]
  kQuantizeBadSize = 2,       // n outside [1, 2^precision]
  kQuantizeBadValue = 3,      // a NaN, infinite or negative probability
  kQuantizeAllZero = 4,
};

// Caller-provided scratch for one row of n entries (the escape included):
// n entries of each array, 4n of `heaps`.  Allocation-free code (a CUDA
// thread's) hands out slices of one buffer.
struct RowScratch {
  double* pmf;              // the row's probabilities, the escape's last
  uint64_t* weight;         // their fixed-point weights
  uint64_t* support_weight; // the weights of a candidate support, its escape's last
  uint32_t* trial;          // that candidate's frequencies
  int32_t* heaps;           // gain heap, gain positions, loss heap, loss positions
};

namespace detail {

// Gain of f -> f + 1 and loss of f -> f - 1 in fixed-point bits, weighted.
struct QuantizeState {
  const uint64_t* w;
  const uint32_t* f;
  const uint64_t* lg;
  FC_HD u128 gain(int32_t i) const { return static_cast<u128>(w[i]) * (lg[f[i] + 1] - lg[f[i]]); }
  FC_HD u128 loss(int32_t i) const { return static_cast<u128>(w[i]) * (lg[f[i]] - lg[f[i] - 1]); }
};

// "a goes above b": the larger gain first, and on ties the lower symbol, so
// that the result is a function of the values alone, whatever the heap does.
struct GainOrder {
  const QuantizeState* q;
  FC_HD bool operator()(int32_t a, int32_t b) const {
    const u128 ga = q->gain(a), gb = q->gain(b);
    return ga != gb ? ga > gb : a < b;
  }
};
// The smaller loss first, ties to the lower symbol.
struct LossOrder {
  const QuantizeState* q;
  FC_HD bool operator()(int32_t a, int32_t b) const {
    const u128 la = q->loss(a), lb = q->loss(b);
    return la != lb ? la < lb : a < b;
  }
};

// A binary heap of symbols with their positions (pos[i] = -1: absent), so
// that a symbol whose key changed is moved in place.
template <class Above>
struct IndexHeap {
  int32_t* heap;
  int32_t* pos;
  int32_t size;
  Above above;

  FC_HD void put(int32_t k, int32_t i) {
    heap[k] = i;
    pos[i] = k;
  }
  FC_HD void sift_up(int32_t k) {
    const int32_t i = heap[k];
    while (k > 0) {
      const int32_t parent = (k - 1) / 2;
      if (!above(i, heap[parent])) break;
      put(k, heap[parent]);
      k = parent;
    }
    put(k, i);
  }
  FC_HD void sift_down(int32_t k) {
    const int32_t i = heap[k];
    for (;;) {
      int32_t child = 2 * k + 1;
      if (child >= size) break;
      if (child + 1 < size && above(heap[child + 1], heap[child])) ++child;
      if (!above(heap[child], i)) break;
      put(k, heap[child]);
      k = child;
    }
    put(k, i);
  }
  FC_HD void push(int32_t i) {
    put(size, i);
    sift_up(size++);
  }
  FC_HD void remove(int32_t i) {
    const int32_t k = pos[i];
    pos[i] = -1;
    if (k == --size) return;
    const int32_t moved = heap[size];
    put(k, moved);
    sift_up(k);
    sift_down(pos[moved]);
  }
  FC_HD void update(int32_t i) {
    sift_up(pos[i]);
    sift_down(pos[i]);
  }
};

}  // namespace detail

// Fixed-point weights w_i = floor(p_i / sum * 2^62) of p[0..n), normalized
// by the largest value first so that huge finite values cannot overflow the
// sum (x * 2^62 is exact here, as ldexp would be: x is in [0, 1]).  One IEEE
// division per entry; everything after it is integer.
FC_HD inline int pmf_weights(const double* p, int64_t n, uint64_t* w) {
  double largest = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!(p[i] >= 0.0 && p[i] <= 1.7976931348623157e308)) return kQuantizeBadValue;
    largest = largest < p[i] ? p[i] : largest;
  }
  if (!(largest > 0.0)) return kQuantizeAllZero;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] / largest;
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<uint64_t>(((p[i] / largest) / sum) * 4611686018427387904.0);
  return kQuantizeOk;
}

// Quantizes weights w[0..n) (1 <= n <= 2^precision, sum <= 2^62) into
// frequencies f[0..n) with f_i >= 1 and sum 2^precision, minimizing
// -sum_i w_i log2(f_i / 2^P).  `lg` is the table of fixed_log2(v) for v in
// [0, kLog2TableSize) (entry 0 unused); `heaps` has 4n entries.
//
// Start below the optimum's neighbourhood, hand out the remaining units one
// at a time to the largest gain, then move units from the smallest loss to
// the largest gain while that strictly improves.  For a separable concave
// objective no improving exchange means optimal.  Gains and losses are
// ordered by (value, symbol), so the result does not depend on how the heaps
// break ties.
FC_HD inline void quantize_weights(const uint64_t* w, int64_t n, int precision, uint32_t* freq, int32_t* heaps,
                                   const uint64_t* lg) {
  const int64_t total_freq = int64_t{1} << precision;
  u128 w_total = 0;
  for (int64_t i = 0; i < n; ++i) w_total += w[i];
  // f_i = 1 + floor(w_i (M - n) / W).
  const u128 spare = static_cast<u128>(total_freq - n);
  int64_t assigned = 0;
  for (int64_t i = 0; i < n; ++i) {
    freq[i] = 1 + static_cast<uint32_t>(w_total ? (w[i] * spare) / w_total : 0);
    assigned += freq[i];
  }

  const detail::QuantizeState state{w, freq, lg};
  detail::IndexHeap<detail::GainOrder> gains{heaps, heaps + n, 0, {&state}};
  detail::IndexHeap<detail::LossOrder> losses{heaps + 2 * n, heaps + 3 * n, 0, {&state}};
  for (int32_t i = 0; i < n; ++i) {
    losses.pos[i] = -1;
    gains.push(i);
    if (freq[i] > 1) losses.push(i);
  }
  auto changed = [&](int32_t i) {
    gains.update(i);
    if (freq[i] > 1) {
      if (losses.pos[i] < 0) losses.push(i);
      else losses.update(i);
    } else if (losses.pos[i] >= 0) {
      losses.remove(i);
    }
  };

  for (; assigned < total_freq; ++assigned) {
    const int32_t i = gains.heap[0];
    ++freq[i];
    changed(i);
  }
  // Each exchange strictly increases the integer objective sum w_i lg[f_i],
  // so the loop terminates.
  while (losses.size > 0) {
    const int32_t best = gains.heap[0], cheapest = losses.heap[0];
    if (best == cheapest || !(state.gain(best) > state.loss(cheapest))) break;
    ++freq[best];
    --freq[cheapest];
    changed(best);
    changed(cheapest);
  }
}

// Probabilities p[0..n) into frequencies: pmf_weights, then quantize_weights.
// Returns a QuantizeStatus.  Uses scratch.weight and scratch.heaps.
FC_HD inline int quantize_pmf_core(const double* p, int64_t n, int precision, uint32_t* freq,
                                   const RowScratch& scratch, const uint64_t* lg) {
  if (precision < 1 || precision > kMaxPrecision) return kQuantizeBadPrecision;
  if (n < 1 || n > (int64_t{1} << precision)) return kQuantizeBadSize;
  const int status = pmf_weights(p, n, scratch.weight);
  if (status != kQuantizeOk) return status;
  quantize_weights(scratch.weight, n, precision, freq, scratch.heaps, lg);
  return kQuantizeOk;
}

// --- rate-optimal support ------------------------------------------------------
//
// A far-tail column of a pmf row costs the row a frequency unit (1 / 2^P of
// the probability space, taken from the likely symbols) however rare it is.
// Left to the escape it costs instead, when it occurs, the escape's code
// plus its raw code (6 + nb bits, docs/format.md "Escape stream").  So the
// support [a, b) of the row's columns is chosen to minimize the expected
// code length of the whole row:
//
//   L(a, b) = sum_{a <= k < b} w_k (P - log2 f_k)  +  W_esc (P - log2 f_esc)
//           + sum_{k < a or k >= b} w_k (6 + nb_k(a, b))
//
// with f the quantization of [a, b) (quantize_weights), W_esc the escape's
// own weight plus the weights left outside, and nb_k the raw code's length
// for column k relative to the support.  (The mass a row misses from 1 has
// no column, so its raw bits are not counted: they barely depend on a, b.)
// L is computed in fixed point (weights 2^-62, bits 2^-48) in 128-bit
// integers, so the choice is the same on every machine.
//
// The search starts at the outermost columns of probability >= 1 / (4M)
// (where each side's outside mass is at most 2^-P if there are none) and moves
// each edge, in and out, or both together, with doubling steps while L
// strictly decreases: a local minimum of the exact objective (no such move
// by one column lowers L), typically a few quantizations per row; it stops, as every
// accepted move lowers an integer.  All the columns are taken instead if
// they cost less, so the result is never worse than the given support.

namespace detail {

// Raw bits of the escape code of a value d >= 0 places beyond the support,
// above it (e = 2d + 1) or below it (e = 2d + 2): 6 + floor(log2 e).
FC_HD inline uint64_t raw_escape_bits(int64_t d, bool below) {
  const uint64_t e = 2 * static_cast<uint64_t>(d) + (below ? 2 : 1);
  return 6 + static_cast<uint64_t>(63 - count_leading_zeros64(e));
}

// L(a, b) of the comment above, for columns w[0..len) and the escape's own
// weight w[len]; quantizes the support into scratch.trial.
FC_HD inline u128 support_cost(const uint64_t* w, int64_t len, int64_t a, int64_t b, int precision,
                               const RowScratch& scratch, const uint64_t* lg) {
  const int64_t n = b - a + 1;
  uint64_t* sw = scratch.support_weight;
  u128 cost = 0;
  uint64_t escape = w[len];
  for (int64_t k = 0; k < a; ++k) {
    escape += w[k];
    cost += static_cast<u128>(w[k]) * (raw_escape_bits(a - 1 - k, true) << kLog2FracBits);
  }
  for (int64_t k = b; k < len; ++k) {
    escape += w[k];
    cost += static_cast<u128>(w[k]) * (raw_escape_bits(k - b, false) << kLog2FracBits);
  }
  for (int64_t k = a; k < b; ++k) sw[k - a] = w[k];
  sw[n - 1] = escape;
  quantize_weights(sw, n, precision, scratch.trial, scratch.heaps, lg);
  const uint64_t full = lg[uint64_t{1} << precision];
  for (int64_t j = 0; j < n; ++j) cost += static_cast<u128>(sw[j]) * (full - lg[scratch.trial[j]]);
  return cost;
}

}  // namespace detail

// The support [*first, *first + *count) of columns w[0..len) (w[len] the
// escape's own weight, the sum at most 2^62) that minimizes the row's
// expected code length, as above; *count + 1 <= 2^precision.  Its
// frequencies (the support's, then the escape's) are in scratch.trial.
FC_HD inline void optimal_support(const uint64_t* w, int64_t len, int precision, const RowScratch& scratch,
                                  const uint64_t* lg, int64_t* first, int64_t* count) {
  const int64_t max_count = (int64_t{1} << precision) - 1;
  // Start from the outermost columns worth a quarter of a frequency unit:
  // an edge column is worth its unit when p M exceeds about log2(e) over
  // the bits its escape would cost beyond P (typically 6 to 9), so the
  // optimum is near.  A row with no such column starts where each side's
  // outside mass is 2^-P.
  const uint64_t unit = static_cast<uint64_t>(int64_t{1} << (62 - precision));  // 1 / M of the weight
  int64_t a = 0, b = len;
  while (a < len && w[a] < unit / 4) ++a;
  if (a < len) {
    while (w[b - 1] < unit / 4) --b;
  } else {
    a = 0;
    for (uint64_t out = 0; a < len - 1 && out + w[a] <= unit; ++a) out += w[a];
    for (uint64_t out = 0; b > a + 1 && out + w[b - 1] <= unit; --b) out += w[b - 1];
  }
  while (b - a > max_count) {  // too wide for the precision: drop the lighter edge
    if (w[a] < w[b - 1]) ++a;
    else --b;
  }
  u128 cost = detail::support_cost(w, len, a, b, precision, scratch, lg);
  // Moves: the left edge out and in, the right edge out and in, and the
  // whole support left and right (which a support at its widest needs).
  const int64_t kEdgeMoves[6][2] = {{-1, 0}, {1, 0}, {0, 1}, {0, -1}, {-1, -1}, {1, 1}};
  for (bool improved = true; improved;) {
    improved = false;
    for (int m = 0; m < 6; ++m) {
      for (int64_t step = 1;;) {
        const int64_t na = a + kEdgeMoves[m][0] * step, nb = b + kEdgeMoves[m][1] * step;
        const bool valid = na >= 0 && nb <= len && na < nb && nb - na <= max_count;
        if (valid) {
          const u128 c = detail::support_cost(w, len, na, nb, precision, scratch, lg);
          if (c < cost) {
            a = na, b = nb, cost = c, improved = true;
            step *= 2;
            continue;
          }
        }
        if (step == 1) break;
        step = 1;
      }
    }
  }
  // Never worse than all the columns (a local minimum might be).
  if (len <= max_count && (a != 0 || b != len) && detail::support_cost(w, len, 0, len, precision, scratch, lg) < cost)
    a = 0, b = len;
  *first = a;
  *count = b - a;
  detail::support_cost(w, len, a, b, precision, scratch, lg);  // leaves its frequencies in scratch.trial
}

// A from_pmf row: its len probabilities, then the escape's, the mass missing
// from 1 (none if the row sums to >= 1).  Returns kQuantizeOk, or
// kRowNotFinite / kRowNegative (at *bad) or kQuantizeAllZero.
enum RowStatus : int { kRowNotFinite = 5, kRowNegative = 6 };
FC_HD inline int pmf_row_with_escape(const double* src, int64_t len, double* dst, int64_t* bad) {
  double sum = 0.0;
  for (int64_t k = 0; k < len; ++k) {
    const double v = src[k];
    *bad = k;
    if (!(v - v == 0.0)) return kRowNotFinite;
    if (v < 0.0) return kRowNegative;
    sum += v;  // may overflow to inf for huge values: then it is >= 1
    dst[k] = v;
  }
  if (!(sum > 0.0)) return kQuantizeAllZero;
  dst[len] = sum < 1.0 ? 1.0 - sum : 0.0;
  return kQuantizeOk;
}

// One from_pmf row, src[0..len): the support [*first, *first + *count) of
// its columns and its count + 1 frequencies in freq (len + 1 entries of
// room).  With `optimal` the support is optimal_support's, else all len
// columns (len + 1 <= 2^precision).  Returns a QuantizeStatus / RowStatus.
FC_HD inline int pmf_row_tables(const double* src, int64_t len, int precision, bool optimal,
                                const RowScratch& scratch, const uint64_t* lg, uint32_t* freq, int64_t* first,
                                int64_t* count, int64_t* bad) {
  if (precision < 1 || precision > kMaxPrecision) return kQuantizeBadPrecision;
  if (len < 1 || (!optimal && len + 1 > (int64_t{1} << precision))) return kQuantizeBadSize;
  int status = pmf_row_with_escape(src, len, scratch.pmf, bad);
  if (status != kQuantizeOk) return status;
  status = pmf_weights(scratch.pmf, len + 1, scratch.weight);
  if (status != kQuantizeOk) return status;
  if (!optimal) {
    *first = 0;
    *count = len;
    quantize_weights(scratch.weight, len + 1, precision, freq, scratch.heaps, lg);
    return kQuantizeOk;
  }
  optimal_support(scratch.weight, len, precision, scratch, lg, first, count);
  for (int64_t j = 0; j <= *count; ++j) freq[j] = scratch.trial[j];
  return kQuantizeOk;
}

// --- zero-mean parametric rows (CdfTables.gaussian, .laplace, .logistic) --------

// Largest half-width h of a symmetric parametric support: 2h + 2 <= 2^P.
FC_HD inline int64_t parametric_max_half_width(int precision) { return (int64_t{1} << (precision - 1)) - 1; }

// Outside mass of the support [-h, h] at scale s: both tails beyond h + 1/2.
FC_HD inline double parametric_outside(Family family, double s, int64_t h) {
  return 2.0 * det_family_sf(family, (static_cast<double>(h) + 0.5) / s);
}

// Smallest h in [0, h_max] with outside(h) <= tail_mass (h_max if none), by
// doubling then bisection.
FC_HD inline int64_t parametric_half_width(Family family, double s, int precision, double tail_mass) {
  const int64_t h_max = parametric_max_half_width(precision);
  int64_t lo = -1, hi = 0;  // outside(lo) > tail_mass (lo = -1: by definition)
  while (hi < h_max && parametric_outside(family, s, hi) > tail_mass) {
    lo = hi;
    hi = 2 * hi + 1 < h_max ? 2 * hi + 1 : h_max;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (parametric_outside(family, s, mid) > tail_mass) lo = mid;
    else hi = mid;
  }
  return hi;
}

// pmf[0 .. 2h + 2): p(k) = F((k + 1/2) / s) - F((k - 1/2) / s) for k in
// [-h, h], then the outside mass (the escape's).
FC_HD inline void parametric_pmf(Family family, double s, int64_t h, double* pmf) {
  for (int64_t k = -h; k <= h; ++k) {
    const double a = (static_cast<double>(k) - 0.5) / s, b = (static_cast<double>(k) + 0.5) / s;
    const double m = det_interval_mass(family, a, b);
    pmf[k + h] = 0.0 < m ? m : 0.0;
  }
  pmf[2 * h + 1] = parametric_outside(family, s, h);
}

// --- scale -> table index ---------------------------------------------------------

// The smallest i with table[i] >= s, clamped to n - 1 (n >= 1, table sorted
// ascending); -1 for NaN.  Comparisons only: exact for float32 and float64
// inputs alike (a float32 converts to double exactly).
FC_HD inline int32_t scale_index(double s, const double* table, int32_t n) {
  if (s != s) return -1;
  // Branch-free lower bound: the comparisons are data-dependent coin flips,
  // which a branchy search mispredicts about half the time.
  const double* base = table;
  for (int32_t len = n; len > 1;) {
    const int32_t half = len / 2;
    base = base[half] < s ? base + half : base;
    len -= half;
  }
  const int32_t index = static_cast<int32_t>(base - table) + (*base < s ? 1 : 0);
  return index < n ? index : n - 1;
}

// --- per-element parametric models ------------------------------------------------
//
// For an element with mean mu and scale s, at precision P (M = 2^P):
//   T     = element_cutoff(family, P): the smallest j / 16 (j >= 0) with
//           2 * sf(j / 16) <= 2^(1 - P), sf the family's standardized upper tail
//   h     = min(2^(P - 2) - 1, ceil(T * s)),  c = floor(mu + 1/2)
//   support k_min = c - h .. c + h (n = 2h + 1 symbols), then the escape
//   R     = M - n - 1
//   q(k)  = floor(R * F((k - 1/2 - mu) / s)),  F the standardized CDF
//           (F(t) = sf(-t) for t < 0, 1 - sf(t) otherwise)
//   C(k)  = (k - k_min) + q(k) - q(k_min)   for k in [k_min, k_min + n]
// Symbol k of the support has [C(k), C(k + 1)); the escape has
// [C(k_min + n), M).  Every frequency is at least 1 (C grows by 1 + the
// growth of q, and C(k_min + n) <= n + R = M - 1), and C(k) is a function
// of k alone, so a decoder finds k by bisection.  q is monotone because F
// is: within the documented scale range, neighbouring values of F differ by
// far more than the evaluation error of detmath.h (relative 3e-13).

constexpr double kMinElementScale = 1.0 / (1 << 20);
constexpr double kMaxElementScale = double(1 << 20);
constexpr double kMaxElementMean = double(1 << 30);

FC_HD inline double element_cutoff(Family family, int precision) {
  const double target = 1.0 / static_cast<double>(int64_t{1} << (precision - 1));
  int j = 0;
  while (2.0 * det_family_sf(family, j / 16.0) > target) ++j;
  return j / 16.0;
}

FC_HD inline double family_cdf(Family family, double t) {
  return t < 0.0 ? det_family_sf(family, -t) : 1.0 - det_family_sf(family, t);
}

struct ElementModel {
  Family family;
  double mean, scale;
  int64_t k_min, n;
  uint32_t total, range, q_min;

  FC_HD uint32_t q(int64_t k) const {
    const double t = ((static_cast<double>(k) - 0.5) - mean) / scale;
    return static_cast<uint32_t>(floor(static_cast<double>(range) * family_cdf(family, t)));
  }
  // C(k) for k in [k_min, k_min + n].
  FC_HD uint32_t cdf(int64_t k) const { return static_cast<uint32_t>(k - k_min) + q(k) - q_min; }
};

// The support's half-width h: all an escape needs, without evaluating F.
FC_HD inline int64_t element_half_width(double scale, int precision, double cutoff) {
  const int64_t h_max = (int64_t{1} << (precision - 2)) - 1;
  const double hs = cutoff * scale;
  return hs >= static_cast<double>(h_max) ? h_max : static_cast<int64_t>(ceil(hs));
}
FC_HD inline int64_t element_center(double mean) { return static_cast<int64_t>(floor(mean + 0.5)); }

// Requires 2 <= precision <= 16, finite mean with |mean| <= kMaxElementMean,
// scale in [kMinElementScale, kMaxElementScale] (callers validate).
FC_HD inline ElementModel element_model(Family family, double mean, double scale, int precision, double cutoff) {
  ElementModel m;
  m.family = family;
  m.mean = mean;
  m.scale = scale;
  const int64_t h = element_half_width(scale, precision, cutoff);
  m.k_min = element_center(mean) - h;
  m.n = 2 * h + 1;
  m.total = uint32_t{1} << precision;
  m.range = m.total - static_cast<uint32_t>(m.n) - 1;
  m.q_min = 0;
  m.q_min = m.q(m.k_min);
  return m;
}

// The (start, frequency) of value v, packed as start | freq << 16 (both
// < 2^16); the escape's interval for a value outside the support.
FC_HD inline uint32_t element_interval(const ElementModel& m, int64_t v) {
  const int64_t end = m.k_min + m.n;
  if (v >= m.k_min && v < end) {
    const uint32_t lo = m.cdf(v), hi = m.cdf(v + 1);
    return lo | (hi - lo) << 16;
  }
  const uint32_t lo = m.cdf(end);
  return lo | (m.total - lo) << 16;
}

}  // namespace featcodec
