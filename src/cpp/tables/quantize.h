// Quantizing a probability vector into integer frequencies summing to 2^P.
//
// The result minimizes the expected code length  -sum_i p_i log2(f_i / 2^P)
// over all integer f with f_i >= 1 and sum f_i = 2^P (every symbol codable).
// The whole optimization runs on integers: probabilities are first turned into
// 62-bit fixed-point weights (one IEEE division each, exactly specified), and
// log2 is a fixed-point table computed by integer arithmetic.  The same input
// therefore gives the same table on every machine, and on a GPU: the
// algorithms themselves (quantize_pmf_core, pmf_row_tables) are in
// table_math.h, shared with the CUDA kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "tables/table_math.h"

namespace featcodec {

// fixed_log2(f) for f in [0, 2^16 + 1] (entry 0 unused).  Built once, thread-safe.
const std::vector<uint64_t>& fixed_log2_table();

// Quantizes probabilities p[0..n) (finite, >= 0, positive sum) into
// frequencies f[0..n) with f_i >= 1 and sum 2^precision.  Requires
// 1 <= n <= 2^precision.  Throws std::invalid_argument otherwise.
void quantize_pmf(const double* p, int64_t n, int precision, uint32_t* freq);

// The scratch of table_math.h's row routines, owned and resized as needed,
// for loops over rows.
class QuantizeBuffers {
 public:
  // quantize_pmf with these buffers.
  void quantize(const double* p, int64_t n, int precision, uint32_t* freq);
  // Scratch for a row of n entries (the escape included).
  RowScratch scratch(int64_t n);

 private:
  std::vector<double> pmf_;
  std::vector<uint64_t> weight_;
  std::vector<uint32_t> trial_;
  std::vector<int32_t> heaps_;
};

}  // namespace featcodec
