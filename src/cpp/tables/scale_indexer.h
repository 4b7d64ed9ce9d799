// Host-side fast path of scale_index (table_math.h): the same function, the
// smallest i with table[i] >= s clamped to n - 1, in about two compares.
//
// For positive doubles the IEEE bit pattern, read as an integer, grows with
// the value.  So the patterns between table[0] and table[n - 1], cut into
// buckets of 2^shift patterns (16 per octave by default), map each s to a
// bucket whose smallest value v has a precomputed lower bound start = index(v);
// index(s) >= start since s >= v, and a short forward scan finds it.  With a
// log-spaced family coarser than 16 per octave a bucket holds at most one
// table entry, so the scan makes one or two compares.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "tables/table_math.h"

namespace featcodec {

class ScaleIndexer {
 public:
  ScaleIndexer(const double* table, int32_t n) : table_(table), n_(n), low_bits_(bits(table[0])) {
    const int64_t span = bits(table[n - 1]) - low_bits_;
    while ((span >> shift_) >= kMaxBuckets) ++shift_;
    start_.resize(static_cast<size_t>(span >> shift_) + 1);
    for (size_t b = 0; b < start_.size(); ++b)
      start_[b] = scale_index(value(low_bits_ + (static_cast<int64_t>(b) << shift_)), table, n);
  }

  // -1 for NaN, like scale_index.
  int32_t operator()(double s) const {
    if (!(s > table_[0])) return s != s ? -1 : 0;
    if (!(s <= table_[n_ - 1])) return n_ - 1;
    int32_t i = start_[static_cast<size_t>((bits(s) - low_bits_) >> shift_)];
    while (table_[i] < s) ++i;  // stops at n - 1 at the latest: table[n - 1] >= s
    return i;
  }

 private:
  static constexpr int64_t kMaxBuckets = int64_t{1} << 16;

  static int64_t bits(double v) {
    int64_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
  }
  static double value(int64_t b) {
    double v;
    std::memcpy(&v, &b, sizeof v);
    return v;
  }

  const double* table_;
  int32_t n_;
  int64_t low_bits_;
  int shift_ = 48;  // 2^(52 - 48) = 16 buckets per octave
  std::vector<int32_t> start_;
};

}  // namespace featcodec
