#include <hotswap/appup/semver.hpp>

#include <algorithm>
#include <limits>
#include <vector>

namespace hotswap::appup {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z'); }
bool is_identifier_char(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'; }

bool all_digits(std::string_view text) { return !text.empty() && std::all_of(text.begin(), text.end(), is_digit); }

// semver forbids leading zeros in numbers ("01"), but "0" itself is fine.
bool has_leading_zero(std::string_view digits) { return digits.size() > 1 && digits.front() == '0'; }

std::optional<uint64_t> parse_number(std::string_view text) {
  if (!all_digits(text) || has_leading_zero(text)) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool valid_identifiers(std::string_view text, bool numeric_without_leading_zero) {
  for (std::string_view part : split(text, '.')) {
    if (part.empty() || !std::all_of(part.begin(), part.end(), is_identifier_char)) return false;
    if (numeric_without_leading_zero && all_digits(part) && has_leading_zero(part)) return false;
  }
  return true;
}

// Numeric identifiers carry no leading zeros, so the longer one is the larger
// one; comparing this way never overflows on huge identifiers.
int compare_numeric(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
}

int compare_identifier(std::string_view a, std::string_view b) {
  const bool a_numeric = all_digits(a), b_numeric = all_digits(b);
  if (a_numeric && b_numeric) return compare_numeric(a, b);
  if (a_numeric != b_numeric) return a_numeric ? -1 : 1;
  const int order = a.compare(b);
  return order < 0 ? -1 : (order == 0 ? 0 : 1);
}

int compare_prerelease(std::string_view a, std::string_view b) {
  // A version without a prerelease ranks above any prerelease of it (1.0.0-rc.1 < 1.0.0).
  if (a.empty() || b.empty()) return a.empty() == b.empty() ? 0 : (a.empty() ? 1 : -1);
  const auto a_parts = split(a, '.'), b_parts = split(b, '.');
  for (size_t i = 0; i < a_parts.size() && i < b_parts.size(); ++i) {
    if (const int order = compare_identifier(a_parts[i], b_parts[i]); order != 0) return order;
  }
  if (a_parts.size() == b_parts.size()) return 0;
  return a_parts.size() < b_parts.size() ? -1 : 1;
}

int compare_numbers(uint64_t a, uint64_t b) { return a < b ? -1 : (a == b ? 0 : 1); }

}  // namespace

std::optional<Version> Version::parse(std::string_view text) {
  Version version;
  if (const size_t plus = text.find('+'); plus != std::string_view::npos) {
    const std::string_view build = text.substr(plus + 1);
    if (build.empty() || !valid_identifiers(build, false)) return std::nullopt;
    version.build = std::string(build);
    text = text.substr(0, plus);
  }
  // The prerelease may itself contain '-', so the first '-' ends the core.
  if (const size_t dash = text.find('-'); dash != std::string_view::npos) {
    const std::string_view prerelease = text.substr(dash + 1);
    if (prerelease.empty() || !valid_identifiers(prerelease, true)) return std::nullopt;
    version.prerelease = std::string(prerelease);
    text = text.substr(0, dash);
  }
  const auto core = split(text, '.');
  if (core.size() != 3) return std::nullopt;
  const auto major = parse_number(core[0]), minor = parse_number(core[1]), patch = parse_number(core[2]);
  if (!major || !minor || !patch) return std::nullopt;
  version.major = *major;
  version.minor = *minor;
  version.patch = *patch;
  return version;
}

std::string Version::str() const {
  std::string text = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (!prerelease.empty()) text += "-" + prerelease;
  if (!build.empty()) text += "+" + build;
  return text;
}

int compare(const Version& a, const Version& b) {
  if (const int order = compare_numbers(a.major, b.major); order != 0) return order;
  if (const int order = compare_numbers(a.minor, b.minor); order != 0) return order;
  if (const int order = compare_numbers(a.patch, b.patch); order != 0) return order;
  return compare_prerelease(a.prerelease, b.prerelease);
}

bool is_valid_name(std::string_view name) {
  constexpr size_t kMaxNameLength = 64;
  if (name.empty() || name.size() > kMaxNameLength || !is_lower_alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return is_lower_alnum(c) || c == '_' || c == '-'; });
}

bool is_valid_version(std::string_view version) {
  return version.size() <= kMaxVersionLength && Version::parse(version).has_value();
}

}  // namespace hotswap::appup
