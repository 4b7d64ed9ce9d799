// Messages: symbols + per-symbol table indexes -> bytes, and back.
// The byte layout is specified in docs/format.md (version 3).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tables/tables.h"

namespace featcodec {

// Bytes that are not a valid message for the given tables and shape.
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A (possibly broadcast) int32 index array over the symbols' shape, given by
// its base pointer, shape and strides in elements (0 where broadcast).
// Every index is checked against the table count on construction
// (std::invalid_argument).  Nothing is materialized per element: block()
// produces a block at a time.
class IndexSource {
 public:
  IndexSource(const int32_t* base, std::vector<int64_t> shape, std::vector<int64_t> strides,
              uint32_t n_tables);
  int64_t size() const { return size_; }
  struct Block {
    const int32_t* indexes;  // into the source, or the buffer
    bool uniform;            // all `count` indexes equal indexes[0] (only it is valid then)
  };
  // Indexes of flat positions [begin, begin + count); count >= 1.
  Block block(int64_t begin, int64_t count, std::vector<int32_t>& buffer) const;

 private:
  void validate(uint32_t n_tables) const;  // std::invalid_argument naming a bad index
  int64_t element_offset(int64_t position) const;

  const int32_t* base_;
  std::vector<int64_t> shape_, strides_;  // collapsed, outermost first
  int64_t size_;
  int64_t constant_run_;  // positions per run of one index in the innermost dimension
};

struct EncodeOptions {
  int checksum_bytes = 4;  // 0, 1, 2 or 4
  std::string context;     // associated data: hashed into the checksum, never sent
  int threads = 1;
  int chunk_bits = 19;  // symbols per chunk = 2^chunk_bits
};

struct DecodeOptions {
  int min_checksum_bytes = 0;  // DecodeError for a message with a shorter checksum
  std::string context;         // what the encoder was given
  int threads = 1;
};

// An encoded message as its parts, so that the caller can place the bytes
// where it wants them (one copy) without a contiguous temporary.
struct Message {
  struct Chunk {
    std::vector<uint64_t> states, startup;  // per lane; lane 0's state after its flush
    bool flushed = false;                   // lane 0 emitted a final word
    std::vector<uint8_t> escape_bytes;
    std::vector<uint8_t> head;  // lanes 1.. states, start-up counts, escape stream size
    std::vector<uint8_t> tail;  // lane 0's state: 1 to 4 bytes
    uint8_t tail_high = 0;      // with a compact header: lane 0's state bits above the tail (in the header)
    std::unique_ptr<uint8_t[]> storage;
    const uint8_t* words = nullptr;  // inside storage
    size_t words_size = 0;
    size_t size() const { return head.size() + words_size + escape_bytes.size() + tail.size(); }
  };
  std::vector<uint8_t> head;  // header byte, chunk directory, checksum of an empty message
  std::vector<Chunk> chunks;
  size_t size() const;
  void write(uint8_t* out) const;  // size() bytes
};

Message encode(const int32_t* symbols, const IndexSource& indexes, const Tables& tables,
               const EncodeOptions& options);

// Decodes into out[0 .. indexes.size()).  Throws DecodeError for bad bytes.
void decode(const uint8_t* data, size_t size, const IndexSource& indexes, const Tables& tables,
            const DecodeOptions& options, int32_t* out);

// Per-element parametric models (table_math.h; docs/format.md, "Per-element
// parametric models"): element i has its own family-F distribution with
// means[i] and scales[i].  Messages have the table path's layout; only the
// intervals differ.
struct ElementModels {
  Family family;
  int precision;            // in [2, 16]
  const double* means;      // `size` each, within the documented ranges
  const double* scales;     // (the caller validates)
  const uint32_t* intervals;  // encoder only, optional: each element's interval
                              // as start | freq << 16, already computed
  int64_t size;
};

Message encode(const int32_t* symbols, const ElementModels& models, const EncodeOptions& options);
void decode(const uint8_t* data, size_t size, const ElementModels& models, const DecodeOptions& options,
            int32_t* out);

// Bits an ideal coder would spend under the quantized tables: -log2 of each
// symbol's probability, plus, for escaped values, the escape's own cost and
// the raw bits of the value code.
double information_content(const int32_t* symbols, const IndexSource& indexes, const Tables& tables);

constexpr int kFormatVersion = 3;
// Threads beyond this many per core buy nothing (the work is split by chunks).
constexpr int kThreadsPerCore = 4;
constexpr int kMinChunkBits = 4;
constexpr int kMaxChunkBits = 30;

}  // namespace featcodec
