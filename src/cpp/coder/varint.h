// LEB128 varints for the message layout (docs/format.md).  Internal linkage:
// this header is compiled into kernels built for different instruction sets.
#pragma once

#include <cstdint>
#include <vector>

#include "coder/codec.h"

namespace featcodec {
namespace {

inline void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<uint8_t>(v | 0x80));
  out.push_back(static_cast<uint8_t>(v));
}
// Reads a LEB128 varint of at most `max_bytes` bytes without passing `end`.
inline uint64_t get_varint(const uint8_t*& p, const uint8_t* end, int max_bytes) {
  uint64_t v = 0;
  for (int i = 0; i < max_bytes; ++i) {
    if (p >= end) throw DecodeError("truncated message");
    const uint8_t b = *p++;
    v |= uint64_t(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) {
      if (b == 0 && i > 0) throw DecodeError("corrupt message: overlong varint");  // not what an encoder writes
      return v;
    }
  }
  throw DecodeError("corrupt message: varint too long");
}

}  // namespace
}  // namespace featcodec
