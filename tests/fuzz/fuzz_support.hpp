// What the fuzz targets share. A target aborts (and libFuzzer saves the input)
// when an invariant of the code under test does not hold; an expected refusal
// (InputError, ConfigError, PatternError) is a normal outcome.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace hotswap::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Like assert(), but also in builds with NDEBUG.
#define HOTSWAP_FUZZ_CHECK(condition)                                                        \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)

}  // namespace hotswap::fuzz
