#include "tables/tables.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "tables/quantize.h"

namespace featcodec {
namespace {

std::string row_name(size_t i) { return "row " + std::to_string(i); }

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(v >> (8 * b)));
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

constexpr uint8_t kTableMagic[4] = {'F', 'C', 'T', 'B'};
constexpr uint8_t kTableFormatVersion = 1;
constexpr size_t kTableHeaderSize = 12;  // magic, version, precision, 2 reserved, n_rows

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size) {
  static const std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

Tables::Tables(int precision, std::vector<int32_t> offsets, std::vector<uint32_t> lengths,
               const std::vector<uint32_t>& freqs)
    : precision_(precision), offsets_(std::move(offsets)), lengths_(std::move(lengths)) {
  if (precision_ < 1 || precision_ > kMaxPrecision)
    throw std::invalid_argument("precision must be in [1, 16], got " + std::to_string(precision_));
  if (offsets_.size() != lengths_.size())
    throw std::invalid_argument("offsets and lengths must have the same number of rows");
  const uint64_t total = uint64_t{1} << precision_;
  row_begin_.resize(lengths_.size() + 1);
  uint64_t pos = 0;
  for (size_t i = 0; i < lengths_.size(); ++i) {
    const uint64_t len = lengths_[i];
    if (len < 1 || len + 1 > total)
      throw std::invalid_argument(row_name(i) + ": length " + std::to_string(len) +
                                  " must be in [1, 2^precision - 1]");
    if (int64_t{offsets_[i]} + int64_t(len) - 1 > INT32_MAX)
      throw std::invalid_argument(row_name(i) + ": support offset + length - 1 exceeds int32");
    row_begin_[i] = pos;
    pos += len + 2;
  }
  row_begin_.back() = pos;
  if (freqs.size() != pos - lengths_.size())
    throw std::invalid_argument("frequency array has the wrong size for the given lengths");
  cdf_.resize(pos);
  const uint32_t* f = freqs.data();
  for (size_t i = 0; i < lengths_.size(); ++i) {
    uint32_t* cdf = &cdf_[row_begin_[i]];
    uint64_t acc = 0;
    cdf[0] = 0;
    for (uint32_t s = 0; s <= lengths_[i]; ++s, ++f) {
      if (*f == 0) throw std::invalid_argument(row_name(i) + ": symbol " + std::to_string(s) + " has frequency 0");
      acc += *f;
      if (acc > total) break;
      cdf[s + 1] = static_cast<uint32_t>(acc);
    }
    if (acc != total)
      throw std::invalid_argument(row_name(i) + ": frequencies must sum to 2^precision");
  }
  build_coder_data();
}

void Tables::build_coder_data() {
  const int p = precision_;
  const int lookup_bits = std::min(p, kMaxLookupBits);
  lookup_shift_ = p - lookup_bits;
  const size_t lookup_size = size_t{1} << lookup_bits;
  enc_.resize(cdf_.size());
  lookup_.resize(lengths_.size() * lookup_size);
  rows_.resize(lengths_.size());
  for (size_t i = 0; i < lengths_.size(); ++i) {
    const uint32_t* cdf = &cdf_[row_begin_[i]];
    EncSymbol* enc = &enc_[row_begin_[i]];
    for (uint32_t s = 0; s <= lengths_[i]; ++s) {
      const uint32_t freq = cdf[s + 1] - cdf[s];
      int shift = 0;
      while ((uint32_t{1} << shift) < freq) ++shift;
      const unsigned __int128 numerator = static_cast<unsigned __int128>(1) << (63 + shift);
      enc[s] = {static_cast<uint64_t>((numerator + freq - 1) / freq), uint64_t{freq} << (63 - p),
                (uint64_t{1} << p) - freq, cdf[s], static_cast<uint32_t>(shift)};
    }
    uint16_t* lookup = &lookup_[i * lookup_size];
    uint32_t s = 0;
    for (size_t b = 0; b < lookup_size; ++b) {
      const uint32_t slot = static_cast<uint32_t>(b) << lookup_shift_;
      while (cdf[s + 1] <= slot) ++s;
      lookup[b] = static_cast<uint16_t>(s);
    }
    rows_[i] = {offsets_[i], lengths_[i], cdf, enc, lookup};
  }
}

namespace {

// Largest bucket table the AVX-512 decoder gets (about 8000 rows at precision
// >= 10); beyond it, decoding stays scalar rather than use that much memory.
constexpr size_t kMaxSimdBucketBytes = size_t{64} << 20;

// The entry of the bucket ending before slot `bucket_end` whose first slot
// is held by s0 (layout in tables.h).  Buckets with escape slots are special
// too: the vector decoder then needs no per-round escape test (and they
// mostly hold several tail symbols anyway).
uint64_t bucket_entry(const uint32_t* cdf, uint32_t length, uint32_t s0, uint32_t bucket_end) {
  const uint32_t end0 = cdf[s0 + 1], freq0 = end0 - cdf[s0];
  uint32_t freq1 = 1;  // no boundary: never read
  if (cdf[length] < bucket_end) {
    freq1 = 0;
  } else if (end0 < bucket_end) {
    // s0 + 1 < length here, so cdf[s0 + 2] is in the row.
    freq1 = cdf[s0 + 2] < bucket_end ? 0 : cdf[s0 + 2] - end0;
  }
  return uint64_t{freq0} | uint64_t{end0 - 1} << 16 | uint64_t{freq1} << 32 | uint64_t{s0} << 48;
}

}  // namespace

const SimdTables& Tables::simd_tables() const {
  std::call_once(simd_once_, [this] {
    const int lookup_bits = precision_ - lookup_shift_;
    const size_t per_row = size_t{1} << lookup_bits;
    simd_ = {nullptr, rows_.data(), offsets_.data(), precision_, lookup_bits};
    if (rows_.empty() || rows_.size() > kMaxSimdBucketBytes / (8 * per_row)) return;
    simd_buckets_.resize(rows_.size() * per_row);
    for (size_t i = 0; i < rows_.size(); ++i) {
      const TableRow& row = rows_[i];
      for (size_t b = 0; b < per_row; ++b) {
        const uint32_t bucket_end = static_cast<uint32_t>(b + 1) << lookup_shift_;
        simd_buckets_[i * per_row + b] = bucket_entry(row.cdf, row.length, row.lookup[b], bucket_end);
      }
    }
    simd_.buckets = simd_buckets_.data();
  });
  return simd_;
}

std::shared_ptr<Tables> Tables::from_pmf(const double* pmf, int64_t n_rows, int64_t stride,
                                         const std::vector<uint32_t>& lengths, std::vector<int32_t> offsets,
                                         int precision, bool optimal_support) {
  if (precision < 1 || precision > kMaxPrecision)
    throw std::invalid_argument("precision must be in [1, 16], got " + std::to_string(precision));
  std::vector<uint32_t> kept(n_rows);
  std::vector<uint32_t> freqs;
  QuantizeBuffers buffers;
  const uint64_t* lg = fixed_log2_table().data();
  for (int64_t i = 0; i < n_rows; ++i) {
    const uint32_t len = lengths[i];
    if (len < 1 || len > stride)
      throw std::invalid_argument(row_name(i) + ": length " + std::to_string(len) + " must be in [1, " +
                                  std::to_string(stride) + "]");
    if (int64_t{offsets[i]} + len - 1 > INT32_MAX)
      throw std::invalid_argument(row_name(i) + ": support offset + length - 1 exceeds int32");
    if (!optimal_support && (uint64_t{len} + 1) > (uint64_t{1} << precision))
      throw std::invalid_argument(row_name(i) + ": " + std::to_string(len) +
                                  " symbols plus the escape do not fit precision " + std::to_string(precision));
    const size_t at = freqs.size();
    freqs.resize(at + len + 1);
    int64_t first = 0, count = 0, bad = 0;
    // The same routine as the CUDA kernel (table_math.h).
    switch (pmf_row_tables(pmf + i * stride, len, precision, optimal_support, buffers.scratch(len + 1), lg,
                           &freqs[at], &first, &count, &bad)) {
      case kQuantizeOk: break;
      case kRowNotFinite: throw std::invalid_argument(row_name(i) + ": pmf has a NaN or infinite value");
      case kRowNegative: throw std::invalid_argument(row_name(i) + ": pmf has a negative value");
      case kQuantizeAllZero: throw std::invalid_argument(row_name(i) + ": pmf is all zero");
      default: throw std::invalid_argument(row_name(i) + ": quantization failed");
    }
    freqs.resize(at + count + 1);
    offsets[i] = static_cast<int32_t>(int64_t{offsets[i]} + first);
    kept[i] = static_cast<uint32_t>(count);
  }
  return std::make_shared<Tables>(precision, std::move(offsets), std::move(kept), freqs);
}

std::shared_ptr<Tables> Tables::parametric(Family family, const double* scales, int64_t n, int precision,
                                           double tail_mass) {
  if (precision < 2 || precision > kMaxPrecision)
    throw std::invalid_argument("precision must be in [2, 16] for parametric tables");
  if (!(tail_mass > 0.0 && tail_mass < 1.0)) throw std::invalid_argument("tail_mass must be in (0, 1)");
  std::vector<int32_t> offsets(n);
  std::vector<uint32_t> lengths(n);
  std::vector<uint32_t> freqs;
  std::vector<double> pmf;
  QuantizeBuffers buffers;
  for (int64_t i = 0; i < n; ++i) {
    const double s = scales[i];
    if (!(s > 0.0) || !std::isfinite(s))
      throw std::invalid_argument("scale " + std::to_string(i) + " must be positive and finite");
    // The same routines as the CUDA kernels (table_math.h).
    const int64_t h = parametric_half_width(family, s, precision, tail_mass);
    pmf.resize(2 * h + 2);
    parametric_pmf(family, s, h, pmf.data());
    offsets[i] = static_cast<int32_t>(-h);
    lengths[i] = static_cast<uint32_t>(2 * h + 1);
    const size_t at = freqs.size();
    freqs.resize(at + pmf.size());
    buffers.quantize(pmf.data(), static_cast<int64_t>(pmf.size()), precision, &freqs[at]);
  }
  return std::make_shared<Tables>(precision, std::move(offsets), std::move(lengths), freqs);
}

std::vector<uint32_t> Tables::freqs(size_t i) const {
  const uint32_t* cdf = &cdf_[row_begin_[i]];
  std::vector<uint32_t> f(lengths_[i] + 1);
  for (size_t s = 0; s < f.size(); ++s) f[s] = cdf[s + 1] - cdf[s];
  return f;
}

bool Tables::operator==(const Tables& other) const {
  return precision_ == other.precision_ && offsets_ == other.offsets_ && lengths_ == other.lengths_ &&
         cdf_ == other.cdf_;
}

std::vector<uint8_t> Tables::serialize() const {
  std::vector<uint8_t> out(kTableMagic, kTableMagic + 4);
  out.push_back(kTableFormatVersion);
  out.push_back(static_cast<uint8_t>(precision_));
  out.push_back(0);
  out.push_back(0);
  put_u32(out, static_cast<uint32_t>(lengths_.size()));
  for (size_t i = 0; i < lengths_.size(); ++i) {
    put_u32(out, static_cast<uint32_t>(offsets_[i]));
    put_u32(out, lengths_[i]);
  }
  for (size_t i = 0; i < lengths_.size(); ++i) {
    const uint32_t* cdf = &cdf_[row_begin_[i]];
    for (uint32_t s = 0; s <= lengths_[i]; ++s) {
      const uint32_t f = cdf[s + 1] - cdf[s];  // < 2^16: the escape always has >= 1
      out.push_back(static_cast<uint8_t>(f));
      out.push_back(static_cast<uint8_t>(f >> 8));
    }
  }
  put_u32(out, crc32(out.data(), out.size()));
  return out;
}

std::shared_ptr<Tables> Tables::deserialize(const uint8_t* data, size_t size) {
  auto fail = [](const std::string& why) { throw std::invalid_argument("invalid table blob: " + why); };
  if (size < kTableHeaderSize + 4 || std::memcmp(data, kTableMagic, 4) != 0) fail("bad magic or too short");
  if (data[4] != kTableFormatVersion) fail("unsupported version " + std::to_string(data[4]));
  if (get_u32(data + size - 4) != crc32(data, size - 4)) fail("checksum mismatch");
  const int precision = data[5];
  if (precision < 1 || precision > kMaxPrecision) fail("precision out of range");
  const uint64_t total = uint64_t{1} << precision;
  const uint64_t n_rows = get_u32(data + 8);
  const uint64_t body = size - kTableHeaderSize - 4;
  if (n_rows > body / 8) fail("row count exceeds the blob size");
  // The whole blob is validated in place before anything is allocated, so
  // that a blob which is refused costs no memory.
  const uint8_t* row_table = data + kTableHeaderSize;
  uint64_t n_freqs = 0;
  for (uint64_t i = 0; i < n_rows; ++i) {
    const int64_t offset = static_cast<int32_t>(get_u32(row_table + 8 * i));
    const uint64_t length = get_u32(row_table + 8 * i + 4);
    if (length < 1 || length + 1 > total) fail(row_name(i) + ": length out of range");
    if (offset + static_cast<int64_t>(length) - 1 > INT32_MAX) fail(row_name(i) + ": support exceeds int32");
    n_freqs += length + 1;
  }
  if (n_freqs * 2 != body - 8 * n_rows) fail("size does not match the row lengths");
  const uint8_t* p = row_table + 8 * n_rows;
  for (uint64_t i = 0; i < n_rows; ++i) {
    const uint64_t entries = uint64_t{get_u32(row_table + 8 * i + 4)} + 1;
    uint64_t sum = 0;
    for (uint64_t k = 0; k < entries; ++k, p += 2) {
      const uint32_t f = uint32_t(p[0]) | uint32_t(p[1]) << 8;
      if (f == 0) fail(row_name(i) + ": symbol " + std::to_string(k) + " has frequency 0");
      sum += f;
    }
    if (sum != total) fail(row_name(i) + ": frequencies must sum to 2^precision");
  }
  std::vector<int32_t> offsets(n_rows);
  std::vector<uint32_t> lengths(n_rows);
  for (uint64_t i = 0; i < n_rows; ++i) {
    offsets[i] = static_cast<int32_t>(get_u32(row_table + 8 * i));
    lengths[i] = get_u32(row_table + 8 * i + 4);
  }
  std::vector<uint32_t> freqs(n_freqs);
  p = row_table + 8 * n_rows;
  for (uint64_t k = 0; k < n_freqs; ++k, p += 2) freqs[k] = uint32_t(p[0]) | uint32_t(p[1]) << 8;
  return std::make_shared<Tables>(precision, std::move(offsets), std::move(lengths), freqs);
}

}  // namespace featcodec
