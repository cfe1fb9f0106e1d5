#include <hotswap/appup/version_pattern.hpp>

#include <utility>

namespace hotswap::appup {

VersionPattern VersionPattern::exact(std::string version) {
  VersionPattern pattern;
  pattern.text_ = std::move(version);
  return pattern;
}

VersionPattern VersionPattern::regex(std::string expression) {
  VersionPattern pattern;
  pattern.regex_ = std::make_shared<const std::regex>(expression, std::regex::ECMAScript);
  pattern.text_ = std::move(expression);
  return pattern;
}

bool VersionPattern::matches(std::string_view version) const {
  if (!regex_) return version == text_;
  // regex_match, not regex_search: "1\.0" must not accept "1.0.7" (OTP matches whole strings).
  return std::regex_match(version.begin(), version.end(), *regex_);
}

std::string VersionPattern::describe() const { return regex_ ? "/" + text_ + "/" : text_; }

}  // namespace hotswap::appup
