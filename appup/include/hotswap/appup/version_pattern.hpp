// Which versions an appup entry applies to: an exact version, or a regular
// expression that must match the WHOLE version string (OTP semantics).
#pragma once

#include <memory>
#include <regex>
#include <string>
#include <string_view>

namespace hotswap::appup {

class VersionPattern {
 public:
  static VersionPattern exact(std::string version);
  // Throws std::regex_error for an invalid expression (ECMAScript grammar).
  static VersionPattern regex(std::string expression);

  bool matches(std::string_view version) const;
  bool is_regex() const { return regex_ != nullptr; }
  // "1.0.0" or "/1\.0\..*/"
  std::string describe() const;

 private:
  std::string text_;
  std::shared_ptr<const std::regex> regex_;
};

}  // namespace hotswap::appup
