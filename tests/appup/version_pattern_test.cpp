#include <catch2/catch.hpp>
#include <hotswap/appup/semver.hpp>
#include <hotswap/appup/version_pattern.hpp>

using hotswap::appup::PatternError;
using hotswap::appup::VersionPattern;

TEST_CASE("An exact pattern matches only its own version string", "[version_pattern]") {
  const VersionPattern pattern = VersionPattern::exact("1.0.0");
  CHECK_FALSE(pattern.is_regex());
  CHECK(pattern.matches("1.0.0"));
  CHECK_FALSE(pattern.matches("1.0.0-rc.1"));
  CHECK_FALSE(pattern.matches("1.0.01"));
  CHECK_FALSE(pattern.matches("11.0.0"));
  CHECK(pattern.describe() == "1.0.0");
}

TEST_CASE("A regex pattern must match the whole version string", "[version_pattern]") {
  const VersionPattern pattern = VersionPattern::regex(R"(1\.1\.[0-9]+)");
  CHECK(pattern.is_regex());
  CHECK(pattern.matches("1.1.0"));
  CHECK(pattern.matches("1.1.27"));
  // A partial match is not enough: these contain "1.1.x" but are not "1.1.x".
  CHECK_FALSE(pattern.matches("1.1.0-rc.1"));
  CHECK_FALSE(pattern.matches("11.1.0"));
  CHECK_FALSE(pattern.matches("2.1.1.0"));
  CHECK(pattern.describe() == R"(/1\.1\.[0-9]+/)");
}

TEST_CASE("An invalid regex pattern throws a PatternError with the regex library's reason", "[version_pattern]") {
  CHECK_THROWS_MATCHES(VersionPattern::regex("1.("), PatternError, Catch::Message("missing ): 1.("));
  CHECK_THROWS_AS(VersionPattern::regex("[1-"), PatternError);
  // RE2 has no backreferences nor lookarounds (they need backtracking).
  CHECK_THROWS_AS(VersionPattern::regex("(1)\\1"), PatternError);
  CHECK_THROWS_AS(VersionPattern::regex("(?=1)1"), PatternError);
}

// std::regex compiled these recursively and overflowed the stack (the host died with SIGSEGV).
TEST_CASE("A regex pattern over the length limit is refused before it is compiled", "[version_pattern]") {
  const std::string long_expression(100'000, 'a');
  CHECK_THROWS_MATCHES(VersionPattern::regex(long_expression), PatternError,
                       Catch::Message("expression of 100000 characters is over the limit of 256"));
  const std::string nested = std::string(20'000, '(') + "1" + std::string(20'000, ')');
  CHECK_THROWS_MATCHES(VersionPattern::regex(nested), PatternError,
                       Catch::Message("expression of 40001 characters is over the limit of 256"));
  // At the limit, deep nesting is fine: RE2 parses without recursion.
  const std::string nested_at_limit = std::string(125, '(') + "1\\.0.*" + std::string(125, ')');
  REQUIRE(nested_at_limit.size() == VersionPattern::kMaxExpressionLength);
  CHECK(VersionPattern::regex(nested_at_limit).matches("1.0.0"));
}

TEST_CASE("A short regex pattern that compiles to a huge program is refused", "[version_pattern]") {
  // 9 characters; every \pL is hundreds of UTF-8 instructions, repeated 1000 times.
  CHECK_THROWS_MATCHES(VersionPattern::regex("\\pL{1000}"), PatternError,
                       Catch::Message("expression compiles to more than 1024 KiB (simplify it, or list versions)"));
}

// std::regex matched recursively: (a|b)* against a 200k-character version overflowed the stack.
TEST_CASE("Matching is linear and never recurses on the version", "[version_pattern]") {
  const VersionPattern alternation = VersionPattern::regex("1\\.0\\.0-(a|b)*");
  std::string version = "1.0.0-";
  for (int i = 0; i < 125; ++i) version += "ab";
  REQUIRE(version.size() == hotswap::appup::kMaxVersionLength);
  CHECK(alternation.matches(version));
  CHECK_FALSE(alternation.matches(version + "c"));
  // No valid version is longer than kMaxVersionLength: such a string matches no pattern.
  CHECK_FALSE(alternation.matches("1.0.0-" + std::string(200'000, 'a')));
  CHECK_FALSE(VersionPattern::regex("(a|b)*").matches(std::string(200'000, 'a')));
}

// std::regex backtracked exponentially: 12 s for these 28 characters, for ever for the longer one.
TEST_CASE("A catastrophic-backtracking pattern answers at once", "[version_pattern]") {
  const VersionPattern nested_plus = VersionPattern::regex("1\\.0\\.0-(a+)+b");
  const std::string version = "1.0.0-" + std::string(22, 'a');
  REQUIRE(version.size() == 28);
  CHECK_FALSE(nested_plus.matches(version));
  CHECK_FALSE(nested_plus.matches("1.0.0-" + std::string(100, 'a')));
  CHECK(nested_plus.matches("1.0.0-" + std::string(100, 'a') + "b"));
}

TEST_CASE("Copies of a regex pattern keep matching", "[version_pattern]") {
  VersionPattern copy = VersionPattern::exact("0.0.0");
  {
    const VersionPattern original = VersionPattern::regex("2\\..*");
    copy = original;
  }
  CHECK(copy.matches("2.3.4"));
  CHECK_FALSE(copy.matches("3.2.4"));
}
