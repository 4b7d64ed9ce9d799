#include "codec.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "rans.h"

namespace featcodec {
namespace {

// Symbols are coded a block at a time so that broadcast indexes never need a
// per-element array of the whole tensor.  A multiple of every lane count.
constexpr int64_t kBlock = 4096;
// Escape payload: a 6-bit bit count, then that many bits (at most 33).
constexpr int kEscapeLengthBits = 6;
constexpr int kMaxEscapeBits = 33;

// --- header byte: version (4 bits) | checksum | chunked | log2(lanes) (2 bits)
struct Header {
  int version;
  bool checksum;
  bool chunked;
  int lanes;
};
uint8_t pack_header(const Header& h) {
  const int log2_lanes = h.lanes == 8 ? 3 : h.lanes == 4 ? 2 : h.lanes == 2 ? 1 : 0;
  return static_cast<uint8_t>(h.version << 4 | h.checksum << 3 | h.chunked << 2 | log2_lanes);
}
Header unpack_header(uint8_t b) { return {b >> 4, bool(b & 8), bool(b & 4), 1 << (b & 3)}; }

// Interleaved lanes: more hide the coder's latency, but each lane beyond a
// single one costs a flush of about 6 bytes, which matters for small messages.
int lanes_for(int64_t count) { return count < 1024 ? 1 : count < 16384 ? 2 : 4; }

// --- checksum over the symbol values (docs/format.md, "Checksum") -----------
inline uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}
constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ULL;

uint64_t chunk_hash(const int32_t* v, int64_t n) {
  uint64_t acc[4] = {0x243F6A8885A308D3ULL, 0x13198A2E03707344ULL, 0xA4093822299F31D0ULL,
                     0x082EFA98EC4E6C89ULL};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) acc[j] = rotl64((acc[j] ^ uint32_t(v[i + j])) * kHashMul, 29);
  for (; i < n; ++i) acc[i & 3] = rotl64((acc[i & 3] ^ uint32_t(v[i])) * kHashMul, 29);
  uint64_t h = fmix64(uint64_t(n) * kHashMul);
  for (int j = 0; j < 4; ++j) h = fmix64(h ^ acc[j]);
  return h;
}
uint32_t message_checksum(const std::vector<uint64_t>& chunk_hashes) {
  uint64_t h = 0x452821E638D01377ULL;
  for (uint64_t c : chunk_hashes) h = fmix64(h ^ c);
  return static_cast<uint32_t>(h);
}

// --- escape code -------------------------------------------------------------
// A value v outside [lo, hi) maps to u = 2 (v - hi) above, 2 (lo - 1 - v) + 1
// below, and e = u + 1 >= 1 is sent as nb = bit_length(e) - 1 (6 bits)
// followed by the nb low bits of e, in 16-bit pieces, lowest piece first.
inline void encode_escape(uint64_t& x, int64_t v, const TableRow& row, int precision, uint8_t*& out) {
  const int64_t lo = row.offset, hi = int64_t{row.offset} + row.length;
  const uint64_t u = v >= hi ? uint64_t(v - hi) * 2 : uint64_t(lo - 1 - v) * 2 + 1;
  const uint64_t e = u + 1;
  const int nb = 63 - __builtin_clzll(e);
  for (int shift = (nb - 1) / 16 * 16; shift >= 0 && nb > 0; shift -= 16) {
    const int k = std::min(16, nb - shift);
    rans_encode_bits(x, uint32_t(e >> shift) & ((uint32_t{1} << k) - 1), k, out);
  }
  rans_encode_bits(x, uint32_t(nb), kEscapeLengthBits, out);
  rans_encode(x, row.enc[row.length], precision, out);
}

template <bool kSingleLane>
inline int32_t decode_escape(uint64_t& x, const TableRow& row, WordReader& reader) {
  const int nb = static_cast<int>(rans_decode_bits<kSingleLane>(x, kEscapeLengthBits, reader));
  if (nb > kMaxEscapeBits) throw DecodeError("corrupt message: escape length out of range");
  uint64_t e = uint64_t{1} << nb;
  for (int shift = 0; shift < nb; shift += 16) {
    const int k = std::min(16, nb - shift);
    e |= uint64_t{rans_decode_bits<kSingleLane>(x, k, reader)} << shift;
  }
  const uint64_t u = e - 1;
  const int64_t v = (u & 1) ? int64_t{row.offset} - 1 - int64_t(u >> 1)
                            : int64_t{row.offset} + row.length + int64_t(u >> 1);
  if (v < INT32_MIN || v > INT32_MAX) throw DecodeError("corrupt message: escaped value outside int32");
  return static_cast<int32_t>(v);
}

// --- varints -------------------------------------------------------------------

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<uint8_t>(v | 0x80));
  out.push_back(static_cast<uint8_t>(v));
}
// Reads a LEB128 varint of at most `max_bytes` bytes without passing `end`.
uint64_t get_varint(const uint8_t*& p, const uint8_t* end, int max_bytes) {
  uint64_t v = 0;
  for (int i = 0; i < max_bytes; ++i) {
    if (p >= end) throw DecodeError("truncated message");
    const uint8_t b = *p++;
    v |= uint64_t(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) return v;
  }
  throw DecodeError("corrupt message: varint too long");
}

// --- one chunk ----------------------------------------------------------------

// LEB128, at most 9 bytes for a value below 2^63; returns the byte count.
int varint_bytes(uint64_t v, uint8_t* out) {
  int n = 0;
  for (; v >= 0x80; v >>= 7) out[n++] = static_cast<uint8_t>(v | 0x80);
  out[n++] = static_cast<uint8_t>(v);
  return n;
}

// Worst case of one chunk: per symbol, one word for the symbol, and for an
// escape also its length and 33 bits (5 words in all); the flush; 4 bytes of
// slack for the encoder's unconditional store.
size_t chunk_bound(int64_t count, int lanes) { return 20 * size_t(count) + 9 * size_t(lanes) + 4; }

// Encodes symbols [begin, begin + count) with K lanes (symbol j of the chunk
// on lane j mod K), writing backwards so that the result ends at `end`.
// Layout: the K final states as LEB128 varints, then the 32-bit words.
// Returns the first byte written.
template <int K>
uint8_t* encode_chunk(const int32_t* symbols, int64_t begin, int64_t count, const IndexSource& indexes,
                      const Tables& tables, uint8_t* end) {
  const TableRow* rows = tables.rows();
  const int precision = tables.precision();
  uint64_t state[K];
  for (int l = 0; l < K; ++l) state[l] = K == 1 ? 0 : kStateLow;
  uint8_t* out = end;
  std::vector<int32_t> buffer;
  const int64_t last_block = (count - 1) / kBlock * kBlock;
  for (int64_t b = last_block; b >= 0; b -= kBlock) {
    const int64_t n = std::min(kBlock, count - b);
    const int32_t* idx = indexes.block(begin + b, n, buffer);
    const int32_t* sym = symbols + begin + b;
    for (int64_t j = n - 1; j >= 0; --j) {
      uint64_t& x = state[j & (K - 1)];
      const TableRow& row = rows[idx[j]];
      const int64_t v = sym[j];
      const uint64_t s = uint64_t(v - row.offset);
      if (s < row.length)
        rans_encode(x, row.enc[s], precision, out);
      else
        encode_escape(x, v, row, precision, out);
    }
  }
  for (int l = K - 1; l >= 0; --l) {
    uint8_t bytes[10];
    const int n = varint_bytes(state[l], bytes);
    out -= n;
    std::memcpy(out, bytes, n);
  }
  return out;
}

template <int K>
void decode_chunk(const uint8_t* data, size_t size, int64_t begin, int64_t count, const IndexSource& indexes,
                  const Tables& tables, int32_t* out) {
  constexpr bool kSingleLane = K == 1;
  const uint64_t initial_state = kSingleLane ? 0 : kStateLow;
  const TableRow* rows = tables.rows();
  const int precision = tables.precision(), shift = tables.lookup_shift();
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  uint64_t state[K];
  for (int l = 0; l < K; ++l) {
    state[l] = get_varint(p, end, 9);
    if (state[l] >> 63 || state[l] < initial_state) throw DecodeError("corrupt message: invalid coder state");
  }
  if ((end - p) % 4 != 0) throw DecodeError("corrupt message: chunk length is not whole words");
  WordReader reader{p, end};
  std::vector<int32_t> buffer;
  for (int64_t b = 0; b < count; b += kBlock) {
    const int64_t n = std::min(kBlock, count - b);
    const int32_t* idx = indexes.block(begin + b, n, buffer);
    int32_t* dst = out + begin + b;
    for (int64_t j = 0; j < n; ++j) {
      uint64_t& x = state[j & (K - 1)];
      const TableRow& row = rows[idx[j]];
      const uint32_t s = rans_decode<kSingleLane>(x, row, precision, shift, reader);
      dst[j] = s < row.length ? static_cast<int32_t>(row.offset + int64_t(s))
                              : decode_escape<kSingleLane>(x, row, reader);
    }
  }
  // The encoder started every lane at the initial state and wrote exactly
  // the words this chunk holds.
  if (reader.overrun || reader.in != reader.end) throw DecodeError("corrupt message: chunk length mismatch");
  for (int l = 0; l < K; ++l)
    if (state[l] != initial_state) throw DecodeError("corrupt message: final coder state mismatch");
}

// Runs task(c) for c in [0, n) on up to `threads` threads; rethrows the first
// exception after all threads have stopped.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& task) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (workers == 1) {
    for (int64_t c = 0; c < n; ++c) task(c);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t c; (c = next.fetch_add(1)) < n;) {
      try {
        task(c);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < workers; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

template <typename F>
void with_lanes(int lanes, F&& f) {
  switch (lanes) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

}  // namespace

// --- IndexSource -----------------------------------------------------------------

IndexSource::IndexSource(const int32_t* base, std::vector<int64_t> shape, std::vector<int64_t> strides,
                         uint32_t n_tables)
    : base_(base), size_(1), n_tables_(n_tables) {
  for (int64_t s : shape) size_ *= s;
  // Collapse: drop unit dimensions, merge a dimension into the one inside it
  // when its stride continues the inner one's (broadcast zeros included).
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 1) continue;
    if (!shape_.empty() && strides[d] == strides_.back() * shape_.back()) {
      shape_.back() *= shape[d];
    } else {
      shape_.push_back(shape[d]);
      strides_.push_back(strides[d]);
    }
  }
  std::reverse(shape_.begin(), shape_.end());
  std::reverse(strides_.begin(), strides_.end());
}

const int32_t* IndexSource::block(int64_t begin, int64_t count, std::vector<int32_t>& buffer) const {
  const int32_t* result;
  if (shape_.size() == 1 && strides_[0] == 1) {
    result = base_ + begin;
  } else {
    buffer.resize(count);
    if (shape_.empty()) {
      std::fill(buffer.begin(), buffer.end(), base_[0]);
    } else {
      // Odometer over the collapsed dimensions, innermost run at a time.
      const size_t nd = shape_.size();
      std::vector<int64_t> coord(nd);
      int64_t rest = begin;
      for (size_t d = nd; d-- > 0;) {
        coord[d] = rest % shape_[d];
        rest /= shape_[d];
      }
      int64_t done = 0;
      while (done < count) {
        int64_t offset = 0;
        for (size_t d = 0; d < nd; ++d) offset += coord[d] * strides_[d];
        const int64_t run = std::min(shape_[nd - 1] - coord[nd - 1], count - done);
        const int64_t step = strides_[nd - 1];
        int32_t* dst = buffer.data() + done;
        if (step == 0)
          std::fill(dst, dst + run, base_[offset]);
        else
          for (int64_t k = 0; k < run; ++k) dst[k] = base_[offset + k * step];
        done += run;
        coord[nd - 1] += run;
        for (size_t d = nd - 1; d > 0 && coord[d] == shape_[d]; --d) {
          coord[d] = 0;
          ++coord[d - 1];
        }
      }
    }
    result = buffer.data();
  }
  uint32_t worst = 0;
  for (int64_t k = 0; k < count; ++k) worst = std::max(worst, uint32_t(result[k]));
  if (worst >= n_tables_) {
    const int32_t* bad = std::find_if(result, result + count, [&](int32_t v) { return uint32_t(v) >= n_tables_; });
    throw std::invalid_argument("index " + std::to_string(*bad) + " is out of range for " +
                                std::to_string(n_tables_) + " tables");
  }
  return result;
}

// --- messages ----------------------------------------------------------------------

std::vector<uint8_t> encode(const int32_t* symbols, const IndexSource& indexes, const Tables& tables,
                            const EncodeOptions& options) {
  if (options.chunk_bits < kMinChunkBits || options.chunk_bits > kMaxChunkBits)
    throw std::invalid_argument("chunk_bits must be in [4, 30]");
  const int64_t n = indexes.size();
  const int64_t chunk = int64_t{1} << options.chunk_bits;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int lanes = lanes_for(std::min(n, chunk));
  const Header header{kFormatVersion, options.checksum, n_chunks > 1, lanes};

  std::vector<std::vector<uint8_t>> chunk_bytes(n_chunks);
  std::vector<uint64_t> hashes(n_chunks);
  parallel_for(n_chunks, options.threads, [&](int64_t c) {
    const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
    std::vector<uint8_t> scratch(chunk_bound(count, lanes));
    uint8_t* end = scratch.data() + scratch.size();
    uint8_t* first = nullptr;
    with_lanes(lanes, [&](auto k) {
      first = encode_chunk<decltype(k)::value>(symbols, begin, count, indexes, tables, end);
    });
    chunk_bytes[c].assign(first, end);
    if (options.checksum) hashes[c] = chunk_hash(symbols + begin, count);
  });

  std::vector<uint8_t> out{pack_header(header)};
  if (header.chunked) {
    out.push_back(static_cast<uint8_t>(options.chunk_bits));
    for (int64_t c = 0; c + 1 < n_chunks; ++c) put_varint(out, chunk_bytes[c].size());
  }
  if (options.checksum) {
    out.resize(out.size() + 4);
    store_u32(out.data() + out.size() - 4, message_checksum(hashes));
  }
  for (const auto& bytes : chunk_bytes) out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

void decode(const uint8_t* data, size_t size, const IndexSource& indexes, const Tables& tables, int threads,
            int32_t* out) {
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  if (size < 1) throw DecodeError("empty message");
  const Header header = unpack_header(*p++);
  if (header.version != kFormatVersion)
    throw DecodeError("not a featcodec message, or an unsupported format version (" +
                      std::to_string(header.version) + ")");
  const int64_t n = indexes.size();
  int64_t chunk = std::max<int64_t>(n, 1);
  if (header.chunked) {
    if (p >= end) throw DecodeError("truncated message: header");
    const int bits = *p++;
    if (bits < kMinChunkBits || bits > kMaxChunkBits) throw DecodeError("corrupt message: chunk size");
    chunk = int64_t{1} << bits;
  }
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  if (header.chunked && n_chunks < 2)
    throw DecodeError("message holds several chunks but the shape has " + std::to_string(n) + " symbols");
  if (header.lanes != lanes_for(std::min(n, chunk)))
    throw DecodeError("message was not encoded for a shape of " + std::to_string(n) + " symbols");
  // Chunk directory: every length but the last's, which is what remains.
  // Each varint takes at least one byte, so a bad n_chunks fails early.
  std::vector<uint64_t> lengths;
  uint64_t listed = 0;
  for (int64_t c = 0; c + 1 < n_chunks; ++c) {
    lengths.push_back(get_varint(p, end, 5));
    listed += lengths.back();
  }
  uint32_t expected_checksum = 0;
  if (header.checksum) {
    if (end - p < 4) throw DecodeError("truncated message: checksum");
    expected_checksum = load_u32(p);
    p += 4;
  }
  const uint64_t remaining = uint64_t(end - p);
  if (n == 0) {
    if (remaining != 0) throw DecodeError("message has data but the shape is empty");
  } else {
    if (listed > remaining) throw DecodeError("truncated message: chunks are shorter than listed");
    lengths.push_back(remaining - listed);
  }
  std::vector<const uint8_t*> starts;
  for (uint64_t len : lengths) {
    starts.push_back(p);
    p += len;
  }

  std::vector<uint64_t> hashes(n_chunks);
  parallel_for(n_chunks, threads, [&](int64_t c) {
    const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
    with_lanes(header.lanes, [&](auto k) {
      decode_chunk<decltype(k)::value>(starts[c], lengths[c], begin, count, indexes, tables, out);
    });
    if (header.checksum) hashes[c] = chunk_hash(out + begin, count);
  });
  if (header.checksum && message_checksum(hashes) != expected_checksum)
    throw DecodeError("checksum mismatch: corrupt message, or decoded with other tables or indexes");
}

double information_content(const int32_t* symbols, const IndexSource& indexes, const Tables& tables) {
  const TableRow* rows = tables.rows();
  const double precision = tables.precision();
  std::vector<int32_t> buffer;
  double bits = 0.0;
  for (int64_t b = 0; b < indexes.size(); b += kBlock) {
    const int64_t n = std::min(kBlock, indexes.size() - b);
    const int32_t* idx = indexes.block(b, n, buffer);
    double block_bits = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const TableRow& row = rows[idx[j]];
      const int64_t v = symbols[b + j];
      uint64_t s = uint64_t(v - row.offset);
      double extra = 0.0;
      if (s >= row.length) {
        const int64_t hi = int64_t{row.offset} + row.length;
        const uint64_t u = v >= hi ? uint64_t(v - hi) * 2 : uint64_t(row.offset - 1 - v) * 2 + 1;
        extra = kEscapeLengthBits + (63 - __builtin_clzll(u + 1));
        s = row.length;
      }
      block_bits += precision - std::log2(double(row.cdf[s + 1] - row.cdf[s])) + extra;
    }
    bits += block_bits;
  }
  return bits;
}

}  // namespace featcodec
