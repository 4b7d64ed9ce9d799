// The chunk checksum over decoded values (docs/format.md, "Checksum"), as an
// incremental hasher.  The values, as uint32, are paired into 64-bit words
// (value 2k low, 2k + 1 high); word k goes to accumulator k mod 16.  Sixteen
// independent chains of one multiply per two values: the bulk loop
// vectorizes (two AVX-512 registers in the x86-64-v4 kernels), so the
// checksum costs a few percent of coding time rather than a sixth.
// Internal linkage: compiled into kernels for different instruction sets.
#pragma once

#include <cstdint>
#include <cstring>

namespace featcodec {
namespace {

constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ULL;
constexpr int kHashRotate = 29;
constexpr int kHashLanes = 16;  // accumulators; 2 * kHashLanes values per round

inline uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}
inline uint64_t hash_mix(uint64_t acc, uint64_t word) { return rotl64((acc ^ word) * kHashMul, kHashRotate); }

// Values 2k and 2k + 1 as one word, whatever the byte order.
inline uint64_t value_pair(const int32_t* v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t w;
  std::memcpy(&w, v, 8);
  return w;
#else
  return uint64_t(uint32_t(v[0])) | uint64_t(uint32_t(v[1])) << 32;
#endif
}

struct ChunkHasher {
  uint64_t acc[kHashLanes];
  int64_t count = 0;     // values added
  uint64_t pending = 0;  // the low half of the next word, when count is odd

  ChunkHasher() {
    for (int j = 0; j < kHashLanes; ++j) acc[j] = uint64_t(j + 1) * kHashMul;
  }

  // Values at the next n positions.
  void add(const int32_t* v, int64_t n) {
    constexpr int64_t kRound = 2 * kHashLanes;
    int64_t i = 0;
    for (; i < n && (count % kRound) != 0; ++i) step(v[i]);
    const int64_t bulk = (n - i) / kRound * kRound;
    if (bulk > 0) {
      uint64_t a[kHashLanes];  // a local copy, which the loop keeps in registers
      std::memcpy(a, acc, sizeof a);
      for (const int32_t* p = v + i; p < v + i + bulk; p += kRound)
        for (int j = 0; j < kHashLanes; ++j) a[j] = hash_mix(a[j], value_pair(p + 2 * j));
      std::memcpy(acc, a, sizeof a);
      count += bulk;
      i += bulk;
    }
    for (; i < n; ++i) step(v[i]);
  }
  uint64_t finish() const {
    uint64_t a[kHashLanes];
    std::memcpy(a, acc, sizeof a);
    if (count & 1) a[(count >> 1) % kHashLanes] = hash_mix(a[(count >> 1) % kHashLanes], pending);
    uint64_t h = fmix64(uint64_t(count) * kHashMul);
    for (int j = 0; j < kHashLanes; ++j) h = fmix64(h ^ a[j]);
    return h;
  }

 private:
  void step(int32_t v) {
    if (count & 1) {
      uint64_t& a = acc[(count >> 1) % kHashLanes];
      a = hash_mix(a, pending | uint64_t(uint32_t(v)) << 32);
    } else {
      pending = uint32_t(v);
    }
    ++count;
  }
};

// The checksum of a whole chunk's values.
inline uint64_t chunk_hash(const int32_t* v, int64_t n) {
  ChunkHasher hasher;
  hasher.add(v, n);
  return hasher.finish();
}

}  // namespace
}  // namespace featcodec
