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

void QuantizeBuffers::quantize(const double* p, int64_t n, int precision, uint32_t* freq) {
  QuantizeScratch scratch{};  // an invalid n is rejected before scratch is used
  if (n >= 1 && n <= (int64_t{1} << kMaxPrecision)) {
    if (weight.size() < static_cast<size_t>(n)) weight.resize(n);
    if (heaps.size() < 4 * static_cast<size_t>(n)) heaps.resize(4 * n);
    int32_t* h = heaps.data();
    scratch = {weight.data(), h, h + n, h + 2 * n, h + 3 * n};
  }
  switch (quantize_pmf_core(p, n, precision, freq, scratch, fixed_log2_table().data())) {
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
