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

// --- header byte: version (3 bits) | escapes | checksum | chunked | log2(lanes) (2 bits)
struct Header {
  int version;
  bool escapes;  // chunks carry an escape stream
  bool checksum;
  bool chunked;
  int lanes;
};
uint8_t pack_header(const Header& h) {
  const int log2_lanes = h.lanes == 8 ? 3 : h.lanes == 4 ? 2 : h.lanes == 2 ? 1 : 0;
  return static_cast<uint8_t>(h.version << 5 | h.escapes << 4 | h.checksum << 3 | h.chunked << 2 | log2_lanes);
}
Header unpack_header(uint8_t b) { return {b >> 5, bool(b & 16), bool(b & 8), bool(b & 4), 1 << (b & 3)}; }

// Interleaved lanes: more hide the coder's latency, but each lane beyond a
// single one costs a flush of about 6 bytes, which matters for small messages.
int lanes_for(int64_t count) { return count < 1024 ? 1 : count < 16384 ? 2 : count < 65536 ? 4 : 8; }

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
// A value v outside [lo, hi) is coded as the row's escape symbol, and its
// value goes to the chunk's escape bit stream: u = 2 (v - hi) above,
// 2 (lo - 1 - v) + 1 below, and e = u + 1 >= 1 is written as nb =
// bit_length(e) - 1 in 6 bits, then the nb low bits of e (LSB first).

inline uint64_t escape_code(int64_t v, const TableRow& row) {
  const int64_t lo = row.offset, hi = int64_t{row.offset} + row.length;
  return (v >= hi ? uint64_t(v - hi) * 2 : uint64_t(lo - 1 - v) * 2 + 1) + 1;
}
inline int escape_payload_bits(uint64_t e) { return 63 - __builtin_clzll(e); }

class BitWriter {
 public:
  void put(uint64_t v, int k) {  // k <= 57
    acc_ |= v << fill_;
    fill_ += k;
    for (; fill_ >= 8; fill_ -= 8, acc_ >>= 8) bytes_.push_back(static_cast<uint8_t>(acc_));
  }
  const std::vector<uint8_t>& finish() {
    if (fill_ > 0) bytes_.push_back(static_cast<uint8_t>(acc_));
    fill_ = 0;
    acc_ = 0;
    return bytes_;
  }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

class BitReader {
 public:
  BitReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t get(int k) {  // k <= 33
    uint64_t v = 0;
    for (int i = 0; i < k; ++i, ++bit_) {
      if (bit_ >= 8 * size_) throw DecodeError("corrupt message: escape stream too short");
      v |= uint64_t((data_[bit_ >> 3] >> (bit_ & 7)) & 1) << i;
    }
    return v;
  }
  // All bytes used, and the padding of the last one is zero.
  bool exhausted() const {
    if ((bit_ + 7) / 8 != size_) return false;
    return (bit_ & 7) == 0 || (data_[size_ - 1] >> (bit_ & 7)) == 0;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t bit_ = 0;
};

void write_escape(BitWriter& bits, uint64_t e) {
  const int nb = escape_payload_bits(e);
  bits.put(uint64_t(nb), kEscapeLengthBits);
  bits.put(e & ((uint64_t{1} << nb) - 1), nb);
}

int32_t read_escape(BitReader& bits, const TableRow& row) {
  const int nb = static_cast<int>(bits.get(kEscapeLengthBits));
  if (nb > kMaxEscapeBits) throw DecodeError("corrupt message: escape length out of range");
  const uint64_t u = ((uint64_t{1} << nb) | bits.get(nb)) - 1;
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
// Layout: the K final lane states (varints), the K start-up counts (varints),
// the escape stream's byte length (varint) and bytes, then the 32-bit words.
//
// The coding loops run over blocks whose start is a multiple of K within the
// chunk, so symbol j of a block is on lane j mod K.  Lanes are unrolled so
// that the states stay in registers.  With a uniform block (a factorized
// model's channel) the row is loaded once.

// kStartup: some lane may still be below L, so count start-up symbols.
template <int K, bool kUniform, bool kStartup>
void encode_block(uint64_t (&state)[K], uint64_t (&startup)[K], const int32_t* sym, const int32_t* idx,
                  int64_t n, const TableRow* rows, int precision, uint8_t*& out, std::vector<uint64_t>& escapes) {
  const TableRow uniform_row = rows[idx[0]];
  auto one = [&](uint64_t& x, uint64_t& count, int64_t j) {
    const TableRow& row = kUniform ? uniform_row : rows[idx[j]];
    const int64_t v = sym[j];
    uint64_t s = uint64_t(v - row.offset);
    if (__builtin_expect(s >= row.length, 0)) {
      escapes.push_back(escape_code(v, row));
      s = row.length;
    }
    if (kStartup) count += x < kStateLow;
    rans_encode(x, row.enc[s], precision, out);
  };
  const int64_t top = (n - 1) & ~int64_t{K - 1};
#pragma GCC unroll 8
  for (int l = K - 1; l >= 0; --l)
    if (top + l < n) one(state[l], startup[l], top + l);
  for (int64_t g = top - K; g >= 0; g -= K) {
#pragma GCC unroll 8
    for (int l = K - 1; l >= 0; --l) one(state[l], startup[l], g + l);
  }
}

template <int K, bool kUniform>
void decode_block(uint64_t (&state)[K], int32_t* dst, const int32_t* idx, int64_t n, const TableRow* rows,
                  int precision, int lookup_shift, WordReader& reader, BitReader& bits) {
  const TableRow uniform_row = rows[idx[0]];
  auto one = [&](uint64_t& x, int64_t j) {
    const TableRow& row = kUniform ? uniform_row : rows[idx[j]];
    const uint32_t s = rans_decode<K == 1>(x, row, precision, lookup_shift, reader);
    dst[j] = __builtin_expect(s < row.length, 1) ? static_cast<int32_t>(row.offset + int64_t(s))
                                                 : read_escape(bits, row);
  };
  const int64_t full = n & ~int64_t{K - 1};
  for (int64_t g = 0; g < full; g += K) {
#pragma GCC unroll 8
    for (int l = 0; l < K; ++l) one(state[l], g + l);
  }
#pragma GCC unroll 8
  for (int l = 0; l < K; ++l)
    if (full + l < n) one(state[l], full + l);
}

// Symbols of lane l among `count`: l, l + K, l + 2K, ...
inline int64_t lane_symbols(int64_t count, int l, int K) { return count > l ? (count - l + K - 1) / K : 0; }

// Encodes symbols [begin, begin + count) with K lanes (symbol j of the chunk
// on lane j mod K) into `part`: words written backwards into its storage,
// the lane states, start-up counts and escape stream kept for the head.
template <int K>
void encode_chunk(const int32_t* symbols, int64_t begin, int64_t count, const IndexSource& indexes,
                  const Tables& tables, Message::Chunk& part) {
  const size_t capacity = 4 * size_t(count) + 4;  // a word per symbol at most, and the store's slack
  part.storage.reset(new uint8_t[capacity]);     // uninitialized: written back to front
  uint8_t* const end = part.storage.get() + capacity;
  uint64_t state[K] = {}, startup[K] = {};
  uint8_t* out = end;
  std::vector<int32_t> buffer;
  std::vector<uint64_t> escapes;  // in encoding order: last symbol first
  for (int64_t b = (count - 1) / kBlock * kBlock; b >= 0; b -= kBlock) {
    const int64_t n = std::min(kBlock, count - b);
    const IndexSource::Block block = indexes.block(begin + b, n, buffer);
    const int32_t* sym = symbols + begin + b;
    bool starting = false;
    for (int l = 0; l < K; ++l) starting |= state[l] < kStateLow;
    auto run = [&](auto uniform, auto counting) {
      encode_block<K, decltype(uniform)::value, decltype(counting)::value>(
          state, startup, sym, block.indexes, n, tables.rows(), tables.precision(), out, escapes);
    };
    using T = std::true_type;
    using F = std::false_type;
    if (block.uniform)
      starting ? run(T{}, T{}) : run(T{}, F{});
    else
      starting ? run(F{}, T{}) : run(F{}, F{});
  }
  BitWriter bits;
  for (auto e = escapes.rbegin(); e != escapes.rend(); ++e) write_escape(bits, *e);
  part.escape_bytes = bits.finish();
  part.states.assign(state, state + K);
  part.startup.assign(startup, startup + K);
  part.words = out;
  part.words_size = size_t(end - out);
}

// The bytes before a chunk's words: lane states, start-up counts (several
// lanes only), and, when the message has escapes, the escape stream.
void finish_chunk_head(Message::Chunk& part, bool escapes) {
  for (uint64_t s : part.states) put_varint(part.head, s);
  if (part.states.size() > 1)
    for (uint64_t c : part.startup) put_varint(part.head, c);
  if (escapes) {
    put_varint(part.head, part.escape_bytes.size());
    part.head.insert(part.head.end(), part.escape_bytes.begin(), part.escape_bytes.end());
  }
}

template <int K>
void decode_chunk(const uint8_t* data, size_t size, bool escapes, int64_t begin, int64_t count,
                  const IndexSource& indexes, const Tables& tables, int32_t* out) {
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  uint64_t state[K];
  for (int l = 0; l < K; ++l) state[l] = get_varint(p, end, 9);
  // Symbols decoded before `fast_end` are past every lane's start-up phase
  // (a single lane finds its own, see rans.h).
  int64_t startup_begin[K] = {};
  int64_t fast_end = count;
  for (int l = 0; l < K && K > 1; ++l) {
    const uint64_t startup = get_varint(p, end, 5);
    const int64_t n_lane = lane_symbols(count, l, K);
    if (startup > uint64_t(n_lane)) throw DecodeError("corrupt message: start-up count out of range");
    startup_begin[l] = n_lane - int64_t(startup);
    fast_end = std::min(fast_end, l + K * startup_begin[l]);
  }
  const uint64_t raw_size = escapes ? get_varint(p, end, 5) : 0;
  if (raw_size > uint64_t(end - p)) throw DecodeError("truncated message: escape stream");
  BitReader bits(p, raw_size);
  p += raw_size;
  if ((end - p) % 4 != 0) throw DecodeError("corrupt message: chunk length is not whole words");
  WordReader reader{p, size_t(end - p)};
  const TableRow* rows = tables.rows();
  const int precision = tables.precision(), shift = tables.lookup_shift();
  std::vector<int32_t> buffer;
  for (int64_t b = 0; b < fast_end; b += kBlock) {
    const int64_t n = std::min(kBlock, fast_end - b);
    const IndexSource::Block block = indexes.block(begin + b, n, buffer);
    int32_t* dst = out + begin + b;
    if (block.uniform)
      decode_block<K, true>(state, dst, block.indexes, n, rows, precision, shift, reader, bits);
    else
      decode_block<K, false>(state, dst, block.indexes, n, rows, precision, shift, reader, bits);
  }
  // The rest, symbol by symbol: a lane reads no words in its start-up phase.
  for (int64_t b = fast_end; b < count; b += kBlock) {
    const int64_t n = std::min(kBlock, count - b);
    const int32_t* idx = indexes.block(begin + b, n, buffer).indexes;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t j = b + k;
      const int l = static_cast<int>(j % K);
      const TableRow& row = rows[idx[k]];
      const uint32_t s = rans_decode<false>(state[l], row, precision, shift, reader, j / K >= startup_begin[l]);
      out[begin + j] = s < row.length ? static_cast<int32_t>(row.offset + int64_t(s)) : read_escape(bits, row);
    }
  }
  // The encoder started every lane at 0 and wrote exactly this chunk's words
  // and escape bits.
  if (reader.pos != reader.size || !bits.exhausted())
    throw DecodeError("corrupt message: chunk length mismatch");
  for (int l = 0; l < K; ++l)
    if (state[l] != 0) throw DecodeError("corrupt message: final coder state mismatch");
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

IndexSource::Block IndexSource::block(int64_t begin, int64_t count, std::vector<int32_t>& buffer) const {
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
  uint32_t low = UINT32_MAX, high = 0;
  for (int64_t k = 0; k < count; ++k) {
    low = std::min(low, uint32_t(result[k]));
    high = std::max(high, uint32_t(result[k]));
  }
  if (high >= n_tables_) {
    const int32_t* bad = std::find_if(result, result + count, [&](int32_t v) { return uint32_t(v) >= n_tables_; });
    throw std::invalid_argument("index " + std::to_string(*bad) + " is out of range for " +
                                std::to_string(n_tables_) + " tables");
  }
  return {result, low == high};
}

// --- messages ----------------------------------------------------------------------

Message encode(const int32_t* symbols, const IndexSource& indexes, const Tables& tables,
               const EncodeOptions& options) {
  if (options.chunk_bits < kMinChunkBits || options.chunk_bits > kMaxChunkBits)
    throw std::invalid_argument("chunk_bits must be in [4, 30]");
  const int64_t n = indexes.size();
  const int64_t chunk = int64_t{1} << options.chunk_bits;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int lanes = lanes_for(std::min(n, chunk));

  Message message;
  message.chunks.resize(n_chunks);
  std::vector<uint64_t> hashes(n_chunks);
  parallel_for(n_chunks, options.threads, [&](int64_t c) {
    const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
    with_lanes(lanes, [&](auto k) {
      encode_chunk<decltype(k)::value>(symbols, begin, count, indexes, tables, message.chunks[c]);
    });
    if (options.checksum) hashes[c] = chunk_hash(symbols + begin, count);
  });

  bool escapes = false;
  for (const Message::Chunk& part : message.chunks) escapes |= !part.escape_bytes.empty();
  for (Message::Chunk& part : message.chunks) finish_chunk_head(part, escapes);
  const Header header{kFormatVersion, escapes, options.checksum, n_chunks > 1, lanes};
  message.head.push_back(pack_header(header));
  if (header.chunked) {
    message.head.push_back(static_cast<uint8_t>(options.chunk_bits));
    for (int64_t c = 0; c + 1 < n_chunks; ++c) put_varint(message.head, message.chunks[c].size());
  }
  if (options.checksum) {
    message.head.resize(message.head.size() + 4);
    store_u32(message.head.data() + message.head.size() - 4, message_checksum(hashes));
  }
  return message;
}

size_t Message::size() const {
  size_t total = head.size();
  for (const Chunk& c : chunks) total += c.size();
  return total;
}

void Message::write(uint8_t* out) const {
  std::memcpy(out, head.data(), head.size());
  out += head.size();
  for (const Chunk& c : chunks) {
    std::memcpy(out, c.head.data(), c.head.size());
    std::memcpy(out + c.head.size(), c.words, c.words_size);
    out += c.size();
  }
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
      decode_chunk<decltype(k)::value>(starts[c], lengths[c], header.escapes, begin, count, indexes, tables, out);
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
    const int32_t* idx = indexes.block(b, n, buffer).indexes;
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
