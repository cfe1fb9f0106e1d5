// Which versions an appup entry applies to: an exact version, or a regular
// expression that must match the WHOLE version string (OTP semantics).
//
// Expressions come from release files, which are untrusted: they are compiled
// with RE2, whose compile and match never recurse on the input and whose match
// time is linear in the version's length (no backtracking), and both the
// expression's length and its compiled size are bounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace re2 {
class RE2;
}

namespace hotswap::appup {

// An expression refused by VersionPattern::regex; what() says why, without
// repeating the expression (which may be huge).
class PatternError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class VersionPattern {
 public:
  // Longer expressions are refused before they reach the regex library.
  static constexpr std::size_t kMaxExpressionLength = 256;
  // The memory RE2 may use for one compiled expression (its program and DFA
  // cache); an expression whose program does not fit is refused.
  static constexpr int64_t kMaxCompiledBytes = 1 << 20;

  static VersionPattern exact(std::string version);
  // RE2 syntax (https://github.com/google/re2/wiki/Syntax): no backreferences
  // nor lookarounds. Throws PatternError for an expression over
  // kMaxExpressionLength characters, one that does not parse, or one that
  // compiles to more than kMaxCompiledBytes.
  static VersionPattern regex(std::string expression);

  // A version longer than kMaxVersionLength (semver.hpp) is not a valid
  // version and matches no pattern.
  bool matches(std::string_view version) const;
  bool is_regex() const { return regex_ != nullptr; }
  // "1.0.0" or "/1\.0\..*/"
  std::string describe() const;

 private:
  std::string text_;
  std::shared_ptr<const re2::RE2> regex_;
};

}  // namespace hotswap::appup
