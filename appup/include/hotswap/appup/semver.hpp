// Semantic versions (semver.org 2.0.0) and the names hotswap accepts for modules and releases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hotswap::appup {

struct Version {
  uint64_t major = 0, minor = 0, patch = 0;
  std::string prerelease;  // without the leading '-'; empty when none
  std::string build;       // without the leading '+'; ignored by comparisons

  // nullopt unless `text` is a whole semantic version ("1.2.3", "1.2.3-rc.1+b5").
  static std::optional<Version> parse(std::string_view text);
  std::string str() const;
};

// Semver precedence: <0, 0, >0. Build metadata is ignored.
int compare(const Version& a, const Version& b);
inline bool operator<(const Version& a, const Version& b) { return compare(a, b) < 0; }
inline bool operator==(const Version& a, const Version& b) { return compare(a, b) == 0; }
inline bool operator!=(const Version& a, const Version& b) { return compare(a, b) != 0; }
inline bool operator>(const Version& a, const Version& b) { return compare(a, b) > 0; }

// Module and release names: [a-z0-9][a-z0-9_-]{0,63}. No path separators, no "..".
bool is_valid_name(std::string_view name);

// Versions come from release files: a longer one is refused, so that no
// version pattern is ever matched against megabytes of text.
constexpr std::size_t kMaxVersionLength = 256;

// A version string usable in paths: a valid semantic version (so no '/' and no
// "..") of at most kMaxVersionLength characters.
bool is_valid_version(std::string_view version);

}  // namespace hotswap::appup
