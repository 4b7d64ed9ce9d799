#include "coder/codec.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "coder/checksum.h"
#include "coder/chunk.h"
#include "coder/escape.h"
#include "coder/rans.h"
#include "coder/lane_head.h"
#include "coder/varint.h"

namespace featcodec {
namespace {


// --- header byte (docs/format.md, "Header byte") -------------------------------
// Full:    0b11 | checksum size (2 bits) | escapes | chunked | log2(lanes) (2 bits)
// Compact: 0b10 | checksum size (2 bits) | escapes | lane 0's state bits above
//          its tail bytes (3 bits), for a message of one chunk and one lane.
struct Header {
  int checksum_bytes;  // 0, 1, 2 or 4
  bool escapes;        // chunks carry an escape stream
  bool chunked;
  int lanes;
  bool compact = false;
  int high = -1;  // compact: the header's state bits
};
constexpr uint8_t kVersionMark = 0xC0;  // bits 7-6 = 11: format 3, full header
constexpr uint8_t kCompactMark = 0x80;  // bits 7-6 = 10: format 3, compact header
constexpr uint8_t kEscapesBit = 0x08;
constexpr int kCompactStateBits = 3;
int checksum_code(int bytes) { return bytes == 4 ? 3 : bytes; }
int checksum_size(int code) { return code == 3 ? 4 : code; }
uint8_t pack_header(const Header& h) {
  const int log2_lanes = h.lanes == 8 ? 3 : h.lanes == 4 ? 2 : h.lanes == 2 ? 1 : 0;
  return static_cast<uint8_t>(kVersionMark | checksum_code(h.checksum_bytes) << 4 | h.escapes << 3 |
                              h.chunked << 2 | log2_lanes);
}
uint8_t pack_compact(const Header& h, uint8_t high) {
  return static_cast<uint8_t>(kCompactMark | checksum_code(h.checksum_bytes) << 4 | h.escapes << 3 | high);
}
Header unpack_header(uint8_t b) {
  if ((b & 0xC0) == kCompactMark) {
    Header h{checksum_size((b >> 4) & 3), bool(b & kEscapesBit), false, 1};
    h.compact = true;
    h.high = b & ((1 << kCompactStateBits) - 1);
    return h;
  }
  if ((b & 0xC0) != kVersionMark) {
    if (b >> 5 == 2)
      throw DecodeError("a format version 2 message: this featcodec reads format version 3 only");
    throw DecodeError("not a featcodec message, or an unsupported format version");
  }
  return {checksum_size((b >> 4) & 3), bool(b & kEscapesBit), bool(b & 4), 1 << (b & 3)};
}
// Messages of one chunk and one lane (every message of 1 to 16384 symbols
// by default) have the compact header.
bool is_compact(int64_t n, bool chunked, int lanes) { return n > 0 && !chunked && lanes == 1; }

// Lanes.  Interleaved lanes hide the coder's latency (the vector decoders
// take eight), but each one beyond the first costs about 1.5 bytes: its
// final state's bit length and its start-up count in the lane head.  A chunk of at most
// 16384 symbols has one lane; a larger one has `fast_lanes` (4 up to 65536
// symbols, else 8), unless one lane codes every chunk of the message in
// under `single_lane_limit` bytes (4 KiB per extra lane, where the extra
// lanes would cost about 0.04 % of the message), and the message has one
// lane.  The rule is the encoder's, and the decoder checks it (so a
// message stays canonical without a checksum): a one-lane message must have
// every chunk under the limit, and a many-lane message whose chunks are all
// under the limit plus `lane_margin` is re-encoded with one lane to see that
// some chunk reaches the limit.  (The margin bounds how much longer the
// many-lane chunk can be than the one-lane chunk: per extra lane at most
// 68 bits of state and 31 of start-up count in the lane head, and under 3
// bytes of slack.)
int fast_lanes(int64_t count) { return count <= 16384 ? 1 : count <= 65536 ? 4 : 8; }
size_t single_lane_limit(int fast) { return size_t{4096} * size_t(fast - 1); }
size_t lane_margin(int fast) { return size_t{32} * size_t(fast); }
bool all_below(const std::vector<size_t>& sizes, size_t limit) {
  return std::all_of(sizes.begin(), sizes.end(), [limit](size_t s) { return s < limit; });
}

// --- checksum (docs/format.md, "Checksum") -----------------------------------
// Seeded with the header (but its escapes bit, which the encoder learns only
// while coding), the chunk size and the associated data, then the chunks.
uint64_t checksum_seed(uint8_t header, int chunk_bits, const std::string& context) {
  uint64_t h = fmix64(0x452821E638D01377ULL ^ uint64_t(header & ~kEscapesBit) ^ uint64_t(chunk_bits) << 8 ^
                      uint64_t(context.size()) << 16);
  for (size_t i = 0; i < context.size(); i += 8) {
    uint64_t w = 0;
    for (size_t b = 0; b < 8 && i + b < context.size(); ++b) w |= uint64_t(uint8_t(context[i + b])) << (8 * b);
    h = fmix64(h ^ w);
  }
  return h;
}
uint64_t message_checksum(uint64_t seed, const std::vector<uint64_t>& chunk_hashes, int bytes) {
  uint64_t h = seed;
  for (uint64_t c : chunk_hashes) h = fmix64(h ^ c);
  return bytes == 0 ? 0 : h & (~uint64_t{0} >> (64 - 8 * bytes));
}

// The bytes around a chunk's words: before them the lane head (several
// lanes only: lane_head.h) and the escape stream's size when the message
// has escapes;
// after the escape stream, lane 0's state in its shortest form (1 to 4
// bytes: the decoder knows how many from the chunk's length).
void finish_chunk(Message::Chunk& part, int64_t count, bool escapes, bool compact) {
  if (part.states.size() > 1) put_lane_head(part.head, part.states, part.startup, part.flushed, count);
  if (escapes) put_varint(part.head, part.escape_bytes.size());
  uint64_t x = part.states[0];
  if (compact) {  // the fewest bytes (at least one) below the header's 5 bits
    int t = 1;
    while (x >> (8 * t + kCompactStateBits)) ++t;
    for (int b = 0; b < t; ++b) part.tail.push_back(static_cast<uint8_t>(x >> (8 * b)));
    part.tail_high = static_cast<uint8_t>(x >> (8 * t));
    return;
  }
  do {
    part.tail.push_back(static_cast<uint8_t>(x));
    x >>= 8;
  } while (x);
}

// Runs task(c) for c in [0, n) on up to `threads` threads; rethrows the first
// exception after all threads have stopped.
// A thread that cannot be started (a process or memory limit) leaves the
// work to the threads that could.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& task) {
  if (threads <= 1 || n <= 1) {  // the usual small message: no need to ask for the core count
    for (int64_t c = 0; c < n; ++c) task(c);
    return;
  }
  // Asked once: hardware_concurrency() reads /sys on Linux, several microseconds,
  // as long as coding a 100-symbol message.
  static const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>({int64_t{threads}, n, cores * kThreadsPerCore}));
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
  for (int64_t t = 1; t < workers; ++t) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;
    }
  }
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

// --- kernel choice -----------------------------------------------------------

namespace {

// Every kernel set by name, from the baseline up; `supported` tells whether
// the CPU runs it.
struct KernelLevel {
  const char* name;
  const ChunkKernels* kernels;
  bool (*supported)();
};
#ifdef FEATCODEC_HAVE_X86_64_LEVELS
bool cpu_has_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v3");
}
bool cpu_has_v4() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v4");
}
#endif
const KernelLevel kLevels[] = {
    {"generic", &generic::kernels, [] { return true; }},
#ifdef FEATCODEC_HAVE_X86_64_LEVELS
    {"avx2", &x86_64_v3::kernels, cpu_has_v3},
    {"avx512", &x86_64_v4::kernels, cpu_has_v4},
#endif
};
constexpr const char* kKnownLevels = "generic, avx2, avx512";

// The kernels named `isa`, if this build and CPU have them.
const ChunkKernels* kernels_for(const std::string& isa) {
  for (const KernelLevel& level : kLevels)
    if (isa == level.name) return level.supported() ? level.kernels : nullptr;
  return nullptr;
}

bool known_level(const std::string& isa) {
  return isa == "generic" || isa == "avx2" || isa == "avx512";
}

std::atomic<const ChunkKernels*> selected_kernels{nullptr};

}  // namespace

// The best kernels the CPU has; with FEATCODEC_ISA, the best of those up to
// the one it names (a level this CPU or build lacks falls back to the best
// below it: the Python package warns about that at import).
const ChunkKernels& chunk_kernels() {
  const ChunkKernels* k = selected_kernels.load(std::memory_order_acquire);
  if (k) return *k;
  const char* forced = std::getenv("FEATCODEC_ISA");
  if (forced && *forced && !known_level(forced))
    throw std::invalid_argument(std::string("FEATCODEC_ISA='") + forced + "' is not one of " + kKnownLevels);
  k = &generic::kernels;
  for (const KernelLevel& level : kLevels) {
    if (level.supported()) k = level.kernels;
    if (forced && *forced && std::string(forced) == level.name) break;
  }
  selected_kernels.store(k, std::memory_order_release);
  return *k;
}

bool select_kernels(const std::string& isa) {
  const ChunkKernels* k = kernels_for(isa);
  if (k) selected_kernels.store(k, std::memory_order_release);
  return k != nullptr;
}

std::vector<std::string> built_kernels() {
  std::vector<std::string> names;
  for (const KernelLevel& level : kLevels) names.emplace_back(level.name);
  return names;
}

std::vector<std::string> available_kernels() {
  std::vector<std::string> names;
  for (const KernelLevel& level : kLevels)
    if (level.supported()) names.emplace_back(level.name);
  return names;
}

// --- IndexSource -----------------------------------------------------------------

IndexSource::IndexSource(const int32_t* base, std::vector<int64_t> shape, std::vector<int64_t> strides,
                         uint32_t n_tables)
    : base_(base), size_(1) {
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
  constant_run_ = shape_.empty() ? std::max<int64_t>(size_, 1) : strides_.back() == 0 ? shape_.back() : 1;
  if (size_ > 0) validate(n_tables);
}

// Checks every distinct element once (the dimensions with a nonzero stride):
// a factorized model's (1, C, 1, 1) indexes cost C checks, not B*C*H*W.
void IndexSource::validate(uint32_t n_tables) const {
  std::vector<int64_t> dims, steps;
  for (size_t d = 0; d < shape_.size(); ++d)
    if (strides_[d] != 0) {
      dims.push_back(shape_[d]);
      steps.push_back(strides_[d]);
    }
  const int64_t inner = dims.empty() ? 1 : dims.back(), step = dims.empty() ? 0 : steps.back();
  std::vector<int64_t> coord(dims.size(), 0);
  for (;;) {
    int64_t offset = 0;
    for (size_t d = 0; d < dims.size(); ++d) offset += coord[d] * steps[d];
    // Every value is at most the OR of all of them: a quick sufficient test
    // (it vectorizes on any x86-64), then an exact search only if it fails.
    uint32_t any = 0;
    if (step == 1)
      for (int64_t k = 0; k < inner; ++k) any |= uint32_t(base_[offset + k]);
    else
      for (int64_t k = 0; k < inner; ++k) any |= uint32_t(base_[offset + k * step]);
    if (any >= n_tables) {
      for (int64_t k = 0; k < inner; ++k)
        if (uint32_t(base_[offset + k * step]) >= n_tables)
          throw std::invalid_argument("index " + std::to_string(base_[offset + k * step]) +
                                      " is out of range for " + std::to_string(n_tables) + " tables");
    }
    // Next run of the outer dimensions.
    size_t d = dims.size() > 0 ? dims.size() - 1 : 0;
    while (d-- > 0) {
      if (++coord[d] < dims[d]) break;
      coord[d] = 0;
    }
    if (d == size_t(-1)) return;
  }
}

IndexSource::Block IndexSource::block(int64_t begin, int64_t count, std::vector<int32_t>& buffer) const {
  // Inside one run of a broadcast innermost dimension: a single index.
  if (begin / constant_run_ == (begin + count - 1) / constant_run_)
    return {base_ + element_offset(begin), true};
  if (shape_.size() == 1 && strides_[0] == 1) return {base_ + begin, false};
  // Otherwise gather: odometer over the collapsed dimensions, a run at a time.
  buffer.resize(count);
  const size_t nd = shape_.size();
  std::vector<int64_t> coord(nd);
  int64_t rest = begin;
  for (size_t d = nd; d-- > 0;) {
    coord[d] = rest % shape_[d];
    rest /= shape_[d];
  }
  for (int64_t done = 0; done < count;) {
    int64_t offset = 0;
    for (size_t d = 0; d < nd; ++d) offset += coord[d] * strides_[d];
    const int64_t run = std::min(shape_[nd - 1] - coord[nd - 1], count - done);
    const int64_t step = strides_[nd - 1];
    int32_t* dst = buffer.data() + done;
    for (int64_t k = 0; k < run; ++k) dst[k] = base_[offset + k * step];
    done += run;
    coord[nd - 1] += run;
    for (size_t d = nd - 1; d > 0 && coord[d] == shape_[d]; --d) {
      coord[d] = 0;
      ++coord[d - 1];
    }
  }
  return {buffer.data(), false};
}

int64_t IndexSource::element_offset(int64_t position) const {
  int64_t offset = 0;
  for (size_t d = shape_.size(); d-- > 0;) {
    offset += (position % shape_[d]) * strides_[d];
    position /= shape_[d];
  }
  return offset;
}

// --- messages ----------------------------------------------------------------------

namespace {

// The message layer, whatever the model: `code_chunk(lanes, begin, count,
// part, lane0_start)` codes symbols [begin, begin + count) into `part`.
using ChunkEncoder = std::function<void(int, int64_t, int64_t, Message::Chunk&, uint64_t)>;

constexpr const char* kMismatch = "message does not match these tables, indexes or shape, or is corrupt";

void check_checksum_bytes(int bytes) {
  if (bytes != 0 && bytes != 1 && bytes != 2 && bytes != 4)
    throw std::invalid_argument("checksum must be 0, 1, 2 or 4 bytes");
}

Message encode_message(const int32_t* symbols, int64_t n, const ChunkEncoder& code_chunk,
                       const EncodeOptions& options) {
  if (options.chunk_bits < kMinChunkBits || options.chunk_bits > kMaxChunkBits)
    throw std::invalid_argument("chunk_bits must be in [4, 30]");
  check_checksum_bytes(options.checksum_bytes);
  if (!options.context.empty() && options.checksum_bytes == 0)
    throw std::invalid_argument("a context is verified by the checksum: it needs checksum bytes");
  const int64_t chunk = int64_t{1} << options.chunk_bits;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int fast = fast_lanes(std::min(n, chunk));
  Header header{options.checksum_bytes, false, n_chunks > 1, fast};

  // The checksum comes first: it is lane 0's initial state in chunk 0, where
  // the decoder finds it as that lane's final state.  It covers the header,
  // lane count included.
  std::vector<uint64_t> hashes;
  if (options.checksum_bytes) {
    hashes.resize(n_chunks);
    parallel_for(n_chunks, options.threads, [&](int64_t c) {
      const int64_t begin = c * chunk;
      hashes[c] = chunk_hash(symbols + begin, std::min(chunk, n - begin));
    });
  }
  auto checksum_for = [&](const Header& h) -> uint64_t {
    if (!options.checksum_bytes) return 0;
    const uint64_t seed = checksum_seed(pack_header(h), h.chunked ? options.chunk_bits : 0, options.context);
    return message_checksum(seed, hashes, options.checksum_bytes);
  };
  // Codes every chunk with `lanes` lanes; returns the chunks' sizes.  The
  // escape stream is the same for any lane count, and so is the escapes bit.
  auto code_chunks = [&](std::vector<Message::Chunk>& chunks, int lanes) {
    Header h = header;
    h.lanes = lanes;
    const bool compact = is_compact(n, header.chunked, lanes);
    const uint64_t start = checksum_for(h);
    chunks.clear();
    chunks.resize(n_chunks);
    parallel_for(n_chunks, options.threads, [&](int64_t c) {
      const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
      code_chunk(lanes, begin, count, chunks[c], c == 0 ? start : 0);
    });
    for (const Message::Chunk& part : chunks) header.escapes |= !part.escape_bytes.empty();
    std::vector<size_t> sizes;
    for (int64_t c = 0; c < n_chunks; ++c) {
      finish_chunk(chunks[c], std::min(chunk, n - c * chunk), header.escapes, compact);
      sizes.push_back(chunks[c].size());
    }
    return sizes;
  };

  Message message;
  const std::vector<size_t> sizes = code_chunks(message.chunks, fast);
  if (fast > 1 && all_below(sizes, single_lane_limit(fast) + lane_margin(fast))) {
    std::vector<Message::Chunk> chunks;
    if (all_below(code_chunks(chunks, 1), single_lane_limit(fast))) {
      message.chunks = std::move(chunks);
      header.lanes = 1;
    }
  }

  if (is_compact(n, header.chunked, header.lanes)) {
    message.head.push_back(pack_compact(header, message.chunks[0].tail_high));
    return message;
  }
  message.head.push_back(pack_header(header));
  if (header.chunked) {
    message.head.push_back(static_cast<uint8_t>(options.chunk_bits));
    for (int64_t c = 0; c + 1 < n_chunks; ++c) put_varint(message.head, message.chunks[c].size());
  }
  if (n == 0) {  // no chunk to hold it
    const uint64_t checksum = checksum_for(header);
    for (int b = 0; b < options.checksum_bytes; ++b) message.head.push_back(static_cast<uint8_t>(checksum >> (8 * b)));
  }
  return message;
}

// `decode_chunk(lanes, bytes, size, escapes, lane0_high, begin, count, hash, outcome)`
// decodes symbols [begin, begin + count); `model` names what a checksum
// mismatch may also mean.
using ChunkDecoder =
    std::function<void(int, const uint8_t*, size_t, bool, int, int64_t, int64_t, bool, ChunkOutcome&)>;
// `encode_chunk(lanes, begin, count, part, lane0_start)` encodes decoded
// symbols [begin, begin + count) again (the lane count check).
void decode_message(const uint8_t* data, size_t size, int64_t n, const ChunkDecoder& decode_chunk,
                    const ChunkEncoder& encode_chunk, const DecodeOptions& options, const char* model) {
  if (options.min_checksum_bytes < 0 || options.min_checksum_bytes > 4)
    throw std::invalid_argument("the required checksum must be 0 to 4 bytes");
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  if (size < 1) throw DecodeError("empty message");
  const uint8_t header_byte = *p++;
  const Header header = unpack_header(header_byte);
  if (header.checksum_bytes < options.min_checksum_bytes)
    throw DecodeError(header.checksum_bytes == 0
                          ? "message has no checksum, and one is required"
                          : "message has a " + std::to_string(header.checksum_bytes) +
                                "-byte checksum, and at least " + std::to_string(options.min_checksum_bytes) +
                                " are required");
  if (header.checksum_bytes == 0 && !options.context.empty())
    throw DecodeError("message has no checksum, so its context cannot be verified");
  if (header.compact && n == 0) throw DecodeError(std::string(kMismatch) + " (a compact header for an empty shape)");
  int64_t chunk = std::max<int64_t>(n, 1);
  int chunk_bits = 0;
  if (header.chunked) {
    if (p >= end) throw DecodeError("truncated message: header");
    chunk_bits = *p++;
    if (chunk_bits < kMinChunkBits || chunk_bits > kMaxChunkBits) throw DecodeError("corrupt message: chunk size");
    chunk = int64_t{1} << chunk_bits;
  }
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  // The lane count is recorded, and must be the encoder's choice (see
  // fast_lanes): a message stays canonical without a checksum.
  const int fast = fast_lanes(std::min(n, chunk));
  if (header.lanes != fast && header.lanes != 1)
    throw DecodeError(std::string(kMismatch) + " (its lane count is not for " + std::to_string(n) + " symbols)");
  if (header.chunked && n_chunks < 2) throw DecodeError(std::string(kMismatch) + " (several chunks, " + std::to_string(n) + " symbols)");
  if (!header.compact && is_compact(n, header.chunked, header.lanes))
    throw DecodeError(std::string(kMismatch) + " (corrupt message: a full header where the compact one belongs)");
  // Chunk directory: every length but the last's, which is what remains.
  // Each varint takes at least one byte, so a bad n_chunks fails early.
  std::vector<uint64_t> lengths;
  uint64_t listed = 0;
  for (int64_t c = 0; c + 1 < n_chunks; ++c) {
    lengths.push_back(get_varint(p, end, 5));
    if (lengths.back() == 0) throw DecodeError("corrupt message: empty chunk");
    listed += lengths.back();
  }
  uint64_t stored_checksum = 0;
  if (n == 0) {
    if (uint64_t(end - p) != uint64_t(header.checksum_bytes))
      throw DecodeError(std::string(kMismatch) + " (data for an empty shape)");
    for (int b = 0; b < header.checksum_bytes; ++b) stored_checksum |= uint64_t(p[b]) << (8 * b);
    p = end;
  } else {
    const uint64_t remaining = uint64_t(end - p);
    if (listed >= remaining) throw DecodeError("truncated message: chunks are shorter than listed");
    lengths.push_back(remaining - listed);
  }
  std::vector<size_t> sizes(lengths.begin(), lengths.end());
  if (header.lanes < fast && !all_below(sizes, single_lane_limit(fast)))
    throw DecodeError(std::string(kMismatch) + " (corrupt message: one lane for a chunk this long)");
  std::vector<const uint8_t*> starts;
  for (uint64_t len : lengths) {
    starts.push_back(p);
    p += len;
  }

  std::vector<ChunkOutcome> outcomes(n_chunks);
  const bool hash = header.checksum_bytes > 0;
  try {
    parallel_for(n_chunks, options.threads, [&](int64_t c) {
      const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
      decode_chunk(header.lanes, starts[c], lengths[c], header.escapes, c == 0 ? header.high : -1, begin, count,
                   hash, outcomes[c]);
    });
  } catch (const DecodeError& e) {
    throw DecodeError(std::string(kMismatch) + " (" + e.what() + ")");
  }
  bool escapes = false;
  for (const ChunkOutcome& o : outcomes) escapes |= o.escapes;
  for (int64_t c = 1; c < n_chunks; ++c)
    if (outcomes[c].lane0_end != 0)
      throw DecodeError(std::string(kMismatch) + " (corrupt message: final coder state mismatch)");
  if (header.escapes && !escapes) throw DecodeError("corrupt message: escapes flagged, but no chunk has any");
  if (n > 0) stored_checksum = outcomes[0].lane0_end;
  if (hash) {
    std::vector<uint64_t> hashes;
    for (const ChunkOutcome& o : outcomes) hashes.push_back(o.hash);
    // Seeded with the full header byte, also for a compact one.
    const uint64_t seed = checksum_seed(pack_header(header), chunk_bits, options.context);
    if (message_checksum(seed, hashes, header.checksum_bytes) != stored_checksum)
      throw DecodeError(std::string("checksum mismatch: ") + kMismatch + " (or other " + model +
                        ", or another context)");
  } else if (stored_checksum != 0) {
    throw DecodeError(std::string(kMismatch) + " (corrupt message: final coder state mismatch)");
  }
  // Several lanes where one would do (every chunk under the limit)?  Only
  // chunks this short can be, so the check costs little.
  if (header.lanes > 1 && all_below(sizes, single_lane_limit(fast) + lane_margin(fast))) {
    Header single = header;
    single.lanes = 1;
    uint64_t single_checksum = 0;
    if (hash) {
      std::vector<uint64_t> hashes;
      for (const ChunkOutcome& o : outcomes) hashes.push_back(o.hash);
      const uint64_t seed = checksum_seed(pack_header(single), chunk_bits, options.context);
      single_checksum = message_checksum(seed, hashes, header.checksum_bytes);
    }
    const bool compact = is_compact(n, header.chunked, 1);
    bool reaches = false;
    for (int64_t c = 0; c < n_chunks && !reaches; ++c) {
      const int64_t begin = c * chunk, count = std::min(chunk, n - begin);
      Message::Chunk part;
      encode_chunk(1, begin, count, part, c == 0 ? single_checksum : 0);
      finish_chunk(part, count, header.escapes, compact);
      reaches = part.size() >= single_lane_limit(fast);
    }
    if (!reaches)
      throw DecodeError(std::string(kMismatch) + " (corrupt message: several lanes where the encoder uses one)");
  }
}

}  // namespace

Message encode(const int32_t* symbols, const IndexSource& indexes, const Tables& tables,
               const EncodeOptions& options) {
  const ChunkKernels& kernels = chunk_kernels();
  return encode_message(
      symbols, indexes.size(),
      [&](int lanes, int64_t begin, int64_t count, Message::Chunk& part, uint64_t lane0_start) {
        kernels.encode(lanes, symbols, begin, count, indexes, tables, part, lane0_start);
      },
      options);
}

void decode(const uint8_t* data, size_t size, const IndexSource& indexes, const Tables& tables,
            const DecodeOptions& options, int32_t* out) {
  const ChunkKernels& kernels = chunk_kernels();
  decode_message(
      data, size, indexes.size(),
      [&](int lanes, const uint8_t* bytes, size_t length, bool escapes, int high, int64_t begin, int64_t count,
          bool hash, ChunkOutcome& outcome) {
        kernels.decode(lanes, bytes, length, escapes, high, begin, count, indexes, tables, out, hash, outcome);
      },
      [&](int lanes, int64_t begin, int64_t count, Message::Chunk& part, uint64_t lane0_start) {
        kernels.encode(lanes, out, begin, count, indexes, tables, part, lane0_start);
      },
      options, "tables or indexes");
}

Message encode(const int32_t* symbols, const ElementModels& models, const EncodeOptions& options) {
  const ChunkKernels& kernels = chunk_kernels();
  return encode_message(
      symbols, models.size,
      [&](int lanes, int64_t begin, int64_t count, Message::Chunk& part, uint64_t lane0_start) {
        kernels.encode_elements(lanes, symbols, begin, count, models, part, lane0_start);
      },
      options);
}

void decode(const uint8_t* data, size_t size, const ElementModels& models, const DecodeOptions& options,
            int32_t* out) {
  const ChunkKernels& kernels = chunk_kernels();
  decode_message(
      data, size, models.size,
      [&](int lanes, const uint8_t* bytes, size_t length, bool escapes, int high, int64_t begin, int64_t count,
          bool hash, ChunkOutcome& outcome) {
        kernels.decode_elements(lanes, bytes, length, escapes, high, begin, count, models, out, hash, outcome);
      },
      [&](int lanes, int64_t begin, int64_t count, Message::Chunk& part, uint64_t lane0_start) {
        ElementModels computed = models;
        computed.intervals = nullptr;  // computed from the means and scales
        kernels.encode_elements(lanes, out, begin, count, computed, part, lane0_start);
      },
      options, "means or scales");
}

size_t Message::size() const {
  size_t total = head.size();
  for (const Chunk& c : chunks) total += c.size();
  return total;
}

void Message::write(uint8_t* out) const {
  // memcpy from an empty vector's null data() is undefined even for 0 bytes.
  auto put = [&out](const uint8_t* data, size_t size) {
    if (size) std::memcpy(out, data, size);
    out += size;
  };
  put(head.data(), head.size());
  for (const Chunk& c : chunks) {
    put(c.head.data(), c.head.size());
    put(c.words, c.words_size);
    put(c.escape_bytes.data(), c.escape_bytes.size());
    put(c.tail.data(), c.tail.size());
  }
}

double information_content(const int32_t* symbols, const IndexSource& indexes, const Tables& tables) {
  const TableRow* rows = tables.rows();
  const double precision = tables.precision();
  std::vector<int32_t> buffer;
  double bits = 0.0;
  for (int64_t b = 0; b < indexes.size(); b += kBlock) {
    const int64_t n = std::min(kBlock, indexes.size() - b);
    const IndexSource::Block block = indexes.block(b, n, buffer);
    double block_bits = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const TableRow& row = rows[block.indexes[block.uniform ? 0 : j]];
      const int64_t v = symbols[b + j];
      uint64_t s = uint64_t(v - row.offset);
      double extra = 0.0;
      if (s >= row.length) {
        extra = escape_entry_bits(v, row.offset, int64_t{row.offset} + row.length);
        s = row.length;
      }
      block_bits += precision - std::log2(double(row.cdf[s + 1] - row.cdf[s])) + extra;
    }
    bits += block_bits;
  }
  return bits;
}

}  // namespace featcodec
