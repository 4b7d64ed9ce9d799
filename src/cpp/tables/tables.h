// Quantized CDF tables: the probability models the rANS coder codes against.
//
// A table row i covers the symbol values offset_i .. offset_i + length_i - 1
// (the support) plus an escape symbol (index length_i) for every other value.
// Its CDF has length_i + 2 entries: cdf[0] = 0, cdf[length_i + 1] = 2^P, and
// every symbol, the escape included, has a frequency of at least 1.
//
// Besides the CDFs, a Tables object keeps what the coder needs per symbol:
// encoder reciprocals (division-free encoding) and a coarse slot-to-symbol
// lookup per row for decoding.  All of it is derived from the frequencies,
// which are the only thing serialized.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tables/detmath.h"

namespace featcodec {

// Everything the encoder needs for one symbol, each field in the width the
// coding step uses it at (so that it is a memory operand, not a load and a
// widening): x' = x + start + q * cmpl_freq with q = floor(x / freq)
// computed as a multiply by `rcp` and a shift (see rans.h), and the
// renormalization bound.
struct EncSymbol {
  uint64_t rcp;        // ceil(2^(63 + shift) / freq)
  uint64_t bound;      // freq << (63 - P): a word goes out first when x >= bound
  uint64_t cmpl_freq;  // 2^P - freq
  uint32_t start;
  uint32_t shift;      // ceil(log2 freq)
};

// A row as the coder sees it.
struct TableRow {
  int32_t offset;
  uint32_t length;         // symbols in the support; `length` is the escape
  const uint32_t* cdf;     // length + 2 entries
  const EncSymbol* enc;    // length + 1 entries
  const uint16_t* lookup;  // 2^lookup_bits entries: symbol holding slot (b << shift)
};

constexpr int kMaxLookupBits = 10;

// What the AVX-512 round decoder (decode_avx512.inc, x86-64-v4 kernels only)
// reads: plain pointers and a plain struct, no inline code.
//
// Bucket b of row t covers the slots [b << lookup_shift, (b + 1) << lookup_shift)
// and has one 64-bit entry at buckets[(t << lookup_bits) + b].  With s0 the
// symbol holding the bucket's first slot:
//   bits  0..15  freq0 = cdf[s0 + 1] - cdf[s0]
//   bits 16..31  cdf[s0 + 1] - 1 (the end of s0, minus 1 to fit 16 bits)
//   bits 32..47  freq1: frequency of s0 + 1 when the bucket holds exactly
//                one symbol boundary (1 when it holds none); 0 marks a
//                "special" bucket: two or more boundaries, or escape slots
//   bits 48..63  s0
// so that a single gather gives a lane its symbol, start and frequency.
struct SimdTables {
  const uint64_t* buckets;  // nullptr: too large, decode without AVX-512
  const TableRow* rows;
  const int32_t* offsets;
  int precision;
  int lookup_bits;
};

class Tables {
 public:
  // Builds rows from frequencies.  `freqs` holds, row after row,
  // lengths[i] + 1 frequencies (the last is the escape's).  Validates
  // everything and throws std::invalid_argument naming the bad row.
  Tables(int precision, std::vector<int32_t> offsets, std::vector<uint32_t> lengths,
         const std::vector<uint32_t>& freqs);
  // Rows point into this object's own arrays: no copies.
  Tables(const Tables&) = delete;
  Tables& operator=(const Tables&) = delete;

  // Rows from probabilities: row i is pmf[i * stride .. i * stride + lengths[i]),
  // the values offsets[i], offsets[i] + 1, ...; the escape gets the mass
  // missing from 1 (none if the row sums to >= 1).  With `optimal_support`
  // each row keeps the columns that minimize its expected code length, the
  // escape's cost included (optimal_support in table_math.h), else all of them.
  static std::shared_ptr<Tables> from_pmf(const double* pmf, int64_t n_rows, int64_t stride,
                                          const std::vector<uint32_t>& lengths, std::vector<int32_t> offsets,
                                          int precision, bool optimal_support);

  // One zero-mean discretized distribution of the family per scale:
  // p(k) = F((k + 1/2) / s) - F((k - 1/2) / s) on the smallest symmetric
  // support whose outside mass is <= tail_mass; the outside mass goes to the
  // escape.  Deterministic (see detmath.h).
  static std::shared_ptr<Tables> parametric(Family family, const double* scales, int64_t n,
                                            int precision, double tail_mass);

  // Versioned little-endian serialization; see docs/format.md.
  std::vector<uint8_t> serialize() const;
  static std::shared_ptr<Tables> deserialize(const uint8_t* data, size_t size);

  int precision() const { return precision_; }
  int lookup_shift() const { return lookup_shift_; }
  size_t size() const { return rows_.size(); }
  const TableRow* rows() const { return rows_.data(); }
  const std::vector<int32_t>& offsets() const { return offsets_; }
  const std::vector<uint32_t>& lengths() const { return lengths_; }
  // Frequencies of row i (length + 1 entries).
  std::vector<uint32_t> freqs(size_t i) const;
  bool operator==(const Tables& other) const;
  // Built on first use (thread-safe), as most tables are never decoded with
  // AVX-512: 8 bytes per bucket, 8 KiB per row at precision >= 10.
  const SimdTables& simd_tables() const;

 private:
  void build_coder_data();

  int precision_;
  int lookup_shift_;
  std::vector<int32_t> offsets_;
  std::vector<uint32_t> lengths_;
  std::vector<uint64_t> row_begin_;  // start of row i in cdf_ and enc_
  std::vector<uint32_t> cdf_;
  std::vector<EncSymbol> enc_;
  std::vector<uint16_t> lookup_;
  std::vector<TableRow> rows_;
  mutable std::once_flag simd_once_;
  mutable std::vector<uint64_t> simd_buckets_;
  mutable SimdTables simd_ = {};
};

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) for table blobs.
uint32_t crc32(const uint8_t* data, size_t size);

}  // namespace featcodec
