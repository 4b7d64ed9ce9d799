// The chunk checksum over decoded values (docs/format.md, "Checksum"), as an
// incremental hasher: value i of a chunk goes to accumulator i mod 4.
// Internal linkage: compiled into kernels for different instruction sets.
#pragma once

#include <cstdint>

namespace featcodec {
namespace {

constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ULL;
constexpr int kHashRotate = 29;

inline uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

struct ChunkHasher {
  uint64_t acc[4] = {0x243F6A8885A308D3ULL, 0x13198A2E03707344ULL, 0xA4093822299F31D0ULL, 0x082EFA98EC4E6C89ULL};
  int64_t count = 0;

  // Values at the next n positions.
  void add(const int32_t* v, int64_t n) {
    int64_t i = 0;
    for (; i < n && ((count + i) & 3); ++i) step(count + i, v[i]);
    for (; i + 4 <= n; i += 4)
      for (int j = 0; j < 4; ++j) acc[j] = rotl64((acc[j] ^ uint32_t(v[i + j])) * kHashMul, kHashRotate);
    for (; i < n; ++i) step(count + i, v[i]);
    count += n;
  }
  uint64_t finish() const {
    uint64_t h = fmix64(uint64_t(count) * kHashMul);
    for (int j = 0; j < 4; ++j) h = fmix64(h ^ acc[j]);
    return h;
  }

 private:
  void step(int64_t position, int32_t v) {
    uint64_t& a = acc[position & 3];
    a = rotl64((a ^ uint32_t(v)) * kHashMul, kHashRotate);
  }
};

}  // namespace
}  // namespace featcodec
