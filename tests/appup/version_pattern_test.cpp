#include <hotswap/appup/version_pattern.hpp>

#include <catch2/catch.hpp>

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

TEST_CASE("An invalid regex pattern throws std::regex_error", "[version_pattern]") {
  CHECK_THROWS_AS(VersionPattern::regex("1.("), std::regex_error);
  CHECK_THROWS_AS(VersionPattern::regex("[1-"), std::regex_error);
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
