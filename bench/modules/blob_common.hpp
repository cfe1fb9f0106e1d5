// Shared by bench_blob 1.0.0 and 2.0.0: filling the blob and a checksum that
// proves the blob survives every swap byte for byte (computed outside the pause).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace bench_blob {

inline void fill(std::string& blob, size_t size) {
  blob.resize(size);
  uint64_t x = 0x243f6a8885a308d3ull;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    blob[i] = static_cast<char>(x);
  }
}

inline std::string checksum(std::string_view blob, uint64_t generation) {
  uint64_t h = 0xcbf29ce484222325ull ^ generation;
  size_t i = 0;
  for (; i + 8 <= blob.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, blob.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < blob.size(); ++i) h = (h ^ static_cast<uint8_t>(blob[i])) * 0x100000001b3ull;
  return "\"" + std::to_string(h) + ":" + std::to_string(blob.size()) + "\"";
}

}  // namespace bench_blob
