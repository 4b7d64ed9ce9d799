#include "tables/quantize.h"

#include <stdexcept>
#include <string>

namespace featcodec {

const std::vector<uint64_t>& fixed_log2_table() {
  static const std::vector<uint64_t> table = [] {
    std::vector<uint64_t> t(kLog2TableSize, 0);
    for (uint64_t v = 1; v < t.size(); ++v) t[v] = fixed_log2(v);
    return t;
  }();
  return table;
}

RowScratch QuantizeBuffers::scratch(int64_t n) {
  const size_t size = static_cast<size_t>(n);
  if (pmf_.size() < size) pmf_.resize(size);
  if (weight_.size() < 2 * size) weight_.resize(2 * size);
  if (trial_.size() < size) trial_.resize(size);
  if (heaps_.size() < 4 * size) heaps_.resize(4 * size);
  return {pmf_.data(), weight_.data(), weight_.data() + size, trial_.data(), heaps_.data()};
}

void QuantizeBuffers::quantize(const double* p, int64_t n, int precision, uint32_t* freq) {
  // An invalid n is rejected before scratch is used.
  const RowScratch s = (n >= 1 && n <= (int64_t{1} << kMaxPrecision)) ? scratch(n) : RowScratch{};
  switch (quantize_pmf_core(p, n, precision, freq, s, fixed_log2_table().data())) {
    case kQuantizeOk: return;
    case kQuantizeBadPrecision: throw std::invalid_argument("precision must be in [1, 16]");
    case kQuantizeBadSize:
      throw std::invalid_argument("a table of " + std::to_string(n) +
                                  " symbols (escape included) does not fit precision " + std::to_string(precision));
    case kQuantizeBadValue: throw std::invalid_argument("probabilities must be finite non-negative numbers");
    default: throw std::invalid_argument("probabilities must not all be zero");
  }
}

void quantize_pmf(const double* p, int64_t n, int precision, uint32_t* freq) {
  QuantizeBuffers buffers;
  buffers.quantize(p, n, precision, freq);
}

}  // namespace featcodec
