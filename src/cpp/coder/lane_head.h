// The lane head of a chunk with K > 1 lanes (docs/format.md, "Chunks"): the
// start-up counts of all lanes, lane 0's flush bit and the final states of
// lanes 1 .. K-1, as one bit stream.  Bits rather than varints because a
// lane's state holds its last symbols' information: written with its bit
// length it costs about 4.5 bits beyond that information, where a varint's
// padding cost about 11, and the counts share one width.
// Internal linkage: this header is compiled into kernels built for
// different instruction sets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "coder/codec.h"

namespace featcodec {
namespace {

constexpr int kCountWidthBits = 5;  // the counts' width, 0 .. 31
constexpr int kStateLengthBits = 5;  // a state's bit length less 32, past its start-up phase

// Symbols of lane l among `count`: l, l + K, l + 2K, ...
inline int64_t lane_symbols(int64_t count, int l, int K) { return count > l ? (count - l + K - 1) / K : 0; }

inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

// A lane whose start-up phase is shorter than the lane has left it, so its
// state is in [2^31, 2^63) and its bit length needs 5 bits; one that never
// left it may end anywhere below 2^63 (6 bits).
inline int state_length_bits(uint64_t startup, int64_t n_lane) {
  return startup < uint64_t(n_lane) ? kStateLengthBits : kStateLengthBits + 1;
}
inline int state_length_base(uint64_t startup, int64_t n_lane) { return startup < uint64_t(n_lane) ? 32 : 0; }

class HeadWriter {
 public:
  explicit HeadWriter(std::vector<uint8_t>& out) : out_(out) {}
  void put(uint64_t v, int k) {  // k <= 62
    for (int i = 0; i < k; ++i) {
      acc_ |= ((v >> i) & 1) << fill_;
      if (++fill_ == 8) flush();
    }
  }
  void finish() {
    if (fill_ > 0) flush();
  }

 private:
  void flush() {
    out_.push_back(static_cast<uint8_t>(acc_));
    acc_ = 0;
    fill_ = 0;
  }
  std::vector<uint8_t>& out_;
  uint32_t acc_ = 0;
  int fill_ = 0;
};

class HeadReader {
 public:
  HeadReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  uint64_t get(int k) {  // k <= 62
    uint64_t v = 0;
    for (int i = 0; i < k; ++i, ++bit_) {
      if (p_ + (bit_ >> 3) >= end_) throw DecodeError("truncated message: lane head");
      v |= uint64_t((p_[bit_ >> 3] >> (bit_ & 7)) & 1) << i;
    }
    return v;
  }
  // Past the head's last byte, whose padding must be zero.
  const uint8_t* finish() const {
    if ((bit_ & 7) && (p_[bit_ >> 3] >> (bit_ & 7)))
      throw DecodeError("corrupt message: nonzero padding in the lane head");
    return p_ + (bit_ + 7) / 8;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  uint64_t bit_ = 0;
};

// states[1 .. K), startup[0 .. K) of a chunk of `count` symbols.
inline void put_lane_head(std::vector<uint8_t>& out, const std::vector<uint64_t>& states,
                          const std::vector<uint64_t>& startup, bool flushed, int64_t count) {
  const int K = static_cast<int>(states.size());
  int width = 0;
  for (uint64_t s : startup) width = std::max(width, bit_length(s));
  HeadWriter head(out);
  head.put(uint64_t(width), kCountWidthBits);
  head.put(flushed, 1);
  for (uint64_t s : startup) head.put(s, width);
  for (int l = 1; l < K; ++l) {
    const int64_t n_lane = lane_symbols(count, l, K);
    const int b = bit_length(states[l]);
    head.put(uint64_t(b - state_length_base(startup[l], n_lane)), state_length_bits(startup[l], n_lane));
    if (b > 1) head.put(states[l], b - 1);  // the bits below its leading one
  }
  head.finish();
}

// Reads the head at p (advanced past it): the counts (each at most its
// lane's symbols), the flush bit and the states, in their only form.
inline void get_lane_head(const uint8_t*& p, const uint8_t* end, int K, int64_t count, uint64_t* states,
                          uint64_t* startup, bool& flushed) {
  HeadReader head(p, end);
  const int width = static_cast<int>(head.get(kCountWidthBits));
  flushed = head.get(1);
  int widest = 0;
  for (int l = 0; l < K; ++l) {
    startup[l] = head.get(width);
    if (startup[l] > uint64_t(lane_symbols(count, l, K)))
      throw DecodeError("corrupt message: start-up count out of range");
    widest = std::max(widest, bit_length(startup[l]));
  }
  if (widest != width) throw DecodeError("corrupt message: start-up counts wider than they need");
  for (int l = 1; l < K; ++l) {
    const int64_t n_lane = lane_symbols(count, l, K);
    // b <= 63 in either form: every state is below 2^63.
    const int b = int(head.get(state_length_bits(startup[l], n_lane))) + state_length_base(startup[l], n_lane);
    states[l] = b == 0 ? 0 : (uint64_t{1} << (b - 1)) | (b > 1 ? head.get(b - 1) : 0);
  }
  p = head.finish();
}

}  // namespace
}  // namespace featcodec
