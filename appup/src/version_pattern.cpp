#include <re2/re2.h>

#include <hotswap/appup/semver.hpp>
#include <hotswap/appup/version_pattern.hpp>
#include <utility>

namespace hotswap::appup {

VersionPattern VersionPattern::exact(std::string version) {
  VersionPattern pattern;
  pattern.text_ = std::move(version);
  return pattern;
}

VersionPattern VersionPattern::regex(std::string expression) {
  if (expression.size() > kMaxExpressionLength) {
    throw PatternError("expression of " + std::to_string(expression.size()) + " characters is over the limit of " +
                       std::to_string(kMaxExpressionLength));
  }
  RE2::Options options;
  options.set_log_errors(false);  // the error goes to the caller, not to stderr
  options.set_max_mem(kMaxCompiledBytes);
  auto compiled = std::make_shared<const RE2>(expression, options);
  if (!compiled->ok()) {
    // RE2 says "pattern too large - compile failed" when the program is over max_mem.
    const bool too_large = compiled->error_code() == RE2::ErrorPatternTooLarge;
    throw PatternError(too_large ? "expression compiles to more than " + std::to_string(kMaxCompiledBytes / 1024) +
                                       " KiB (simplify it, or list versions)"
                                 : compiled->error());
  }
  VersionPattern pattern;
  pattern.regex_ = std::move(compiled);
  pattern.text_ = std::move(expression);
  return pattern;
}

bool VersionPattern::matches(std::string_view version) const {
  if (!regex_) return version == text_;
  if (version.size() > kMaxVersionLength) return false;
  // FullMatch, not PartialMatch: "1\.0" must not accept "1.0.7" (OTP matches whole strings).
  return RE2::FullMatch(re2::StringPiece(version.data(), version.size()), *regex_);
}

std::string VersionPattern::describe() const { return regex_ ? "/" + text_ + "/" : text_; }

}  // namespace hotswap::appup
